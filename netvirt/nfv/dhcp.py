"""DHCP for a network's ports, answered by the controller with each port's configured
address (`dhcp: true` on the network), as OVN's ls_in_dhcp_options/response do.

The DHCP stage sends a request to the controller through the punt meter; PORT_SECURITY
admits a port's DHCP discover/request from 0.0.0.0 (it has no address yet) with its own MAC
only.  The answer is worked out here, as plain values (answer()); the driver encodes it
(drivers/packets.py) and sends it out of the asking port: a packet-in service answers
directly, the one exception to "handlers only mark dirty" (docs/architecture.md)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netvirt.config.allocate import digest
from netvirt.pipeline.layout import (DHCP_CLIENT_PORT, DHCP_SERVER_PORT, ETH_IP, IPPROTO_UDP,
                                     PUNT_METER_ID, UNTAGGED, VNI_MASK)
from netvirt.pipeline.records import Flow, Goto, MeterAction, Output, WriteMetadata
from netvirt.pipeline.tables import Table
from netvirt.topology.views import NetworkOnHv, network_views

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
LEASE_SECONDS = 12 * 3600
BROADCAST_FLAG = 0x8000


def dhcp_views(topo, hv: str, inv) -> list[NetworkOnHv]:
    return [v for v in network_views(topo, hv, inv) if v.dhcp and v.bound]


def compile_dhcp(net: NetworkOnHv) -> tuple[list[Flow], list, list]:
    admit = [WriteMetadata(net.vni, VNI_MASK), Goto(Table.DHCP)]
    flows = [Flow.make(Table.PORT_SECURITY, 110,
                       {"in_port": p.ofport, "vlan_vid": UNTAGGED, "eth_src": p.mac,
                        "eth_type": ETH_IP,
                        "ipv4_src": "0.0.0.0", "ipv4_dst": "255.255.255.255",
                        "ip_proto": IPPROTO_UDP, "udp_src": DHCP_CLIENT_PORT,
                        "udp_dst": DHCP_SERVER_PORT}, admit, p.origin)
             for p in net.bound]
    flows.append(Flow.make(Table.DHCP, 100,
                           {"metadata": (net.vni, VNI_MASK), "eth_type": ETH_IP,
                            "ip_proto": IPPROTO_UDP, "udp_dst": DHCP_SERVER_PORT},
                           [MeterAction(PUNT_METER_ID), Output("CONTROLLER")], net.origin))
    return flows, [], []


def server_mac(tenant: str, network: str) -> str:
    """The DHCP server's MAC in a network: locally administered, 0e:..., so it is never one
    netvirt allocates to a port (02:...)."""
    v = digest(f"dhcp/{tenant}/{network}", 5)
    return "0e:" + ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(32, -1, -8))


@dataclass(frozen=True)
class Request:
    msg_type: int
    xid: int
    client_mac: str  # chaddr
    ciaddr: str = "0.0.0.0"
    requested_ip: str | None = None
    flags: int = 0


@dataclass(frozen=True)
class Lease:
    """What the config says a port gets."""

    ip: str
    prefixlen: int
    gateway: str  # also the server's address
    mtu: int
    server_mac: str


@dataclass(frozen=True)
class Answer:
    msg_type: int
    xid: int
    client_mac: str
    yiaddr: str
    server_ip: str
    server_mac: str
    dst_ip: str
    options: tuple  # ((tag, value), ...) in the order sent
    flags: int = 0


def lease_of(port, router_mac: str | None = None) -> Lease:
    """``port``: a topology PortRef on a dhcp network; ``router_mac``: the MAC of the
    network's router interface, if it has one: the server answers from the gateway's
    address, so it answers with the MAC that address has."""
    ip = port.port.ips[0]
    subnet = next(s for s in port.network.subnets if ip in s.cidr)
    return Lease(str(ip), subnet.cidr.prefixlen, str(subnet.gateway), port.network.mtu,
                 router_mac or server_mac(port.tenant, port.network.name))


def answer(req: Request, lease: Lease) -> Answer | None:
    """The reply to ``req`` from a port whose lease is ``lease``; None: no reply is due."""
    if req.msg_type == DISCOVER:
        kind = OFFER
    elif req.msg_type == REQUEST:
        wanted = req.requested_ip or (req.ciaddr if req.ciaddr != "0.0.0.0" else None)
        kind = ACK if wanted in (None, lease.ip) else NAK
    elif req.msg_type == INFORM:
        kind = ACK
    else:
        return None  # DECLINE, RELEASE: nothing to say; the address stays the port's
    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{lease.prefixlen}").netmask)
    options = [(53, kind), (54, lease.gateway)]
    if kind != NAK:
        options += [(1, mask), (3, lease.gateway), (26, lease.mtu)]
        if req.msg_type != INFORM:
            options += [(51, LEASE_SECONDS), (58, LEASE_SECONDS // 2),
                        (59, LEASE_SECONDS * 7 // 8)]
    yiaddr = lease.ip if kind != NAK and req.msg_type != INFORM else "0.0.0.0"
    broadcast = kind == NAK or req.flags & BROADCAST_FLAG
    dst = "255.255.255.255" if broadcast else (req.ciaddr if req.msg_type == INFORM else yiaddr)
    return Answer(kind, req.xid, req.client_mac, yiaddr, lease.gateway, lease.server_mac, dst,
                  tuple(options), req.flags)
