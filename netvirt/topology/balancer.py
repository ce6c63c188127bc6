"""What one load balancer looks like from one hypervisor: its VIP, its members (wherever they
are: a client's hypervisor DNATs to any of them) and the networks of the tenant here whose
ports may be its clients (the VIP's network, and the networks its router joins to it).
Plain values, so its compile is remembered until a member, the VIP or a client network
changes."""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import NamedTuple

from netvirt.config.allocate import router_mac
from netvirt.pipeline.layout import IP_PROTOCOLS
from netvirt.topology.graph import Topology
from netvirt.topology.inventory import Inventory

PROBE_PORT = 65100  # the VIP's source port of health checks: what comes back to it is theirs


class LbMember(NamedTuple):
    origin: str  # tenant/T/load_balancer/L/member/P
    ip: str
    mac: str
    target_port: int
    weight: int
    vni: int  # its network: the VIP's, or one the VIP's router joins to it
    # where a client on the VIP's network sends a packet DNATed to it: its own MAC on the
    # VIP's network, else the router's there (which routes the member's address on)
    next_mac: str
    # what its call to its own VIP is SNATed to: the lowest VIP that has this member at this
    # port and protocol, so that every such VIP compiles one hairpin for it (after the DNAT
    # nothing says which VIP was called; the reply gets that back from the tenant's zone)
    hairpin_ip: str


class LbOnHv(NamedTuple):
    origin: str  # tenant/T/load_balancer/L
    zone: int  # the tenant's conntrack zone: a connection's DNAT and its undoing meet there
    hairpin_zone: int  # where a member's call to its own VIP is SNATed to the VIP
    vip: str
    protocol: str  # "tcp" or "udp"
    port: int
    vip_mac: str  # what ARP for the VIP answers (the VIP's network only)
    vip_vni: int
    answers_arp: bool  # the VIP's network has ports here
    client_vnis: tuple[int, ...]  # networks here whose ports may call the VIP
    members: tuple[LbMember, ...]  # all: an established connection keeps its member
    local: tuple[str, ...]  # origins of the members here (who may call their own VIP)
    affinity: int  # source affinity's idle timeout in seconds; 0: a hash of each connection
    checked: bool  # health checks: their answers (from members here) go to the controller
    down: tuple[str, ...]  # members whose checks fail: no new connection goes to them

    @property
    def ip_proto(self) -> int:
        return IP_PROTOCOLS[self.protocol]


def lb_origin(tenant: str, name: str) -> str:
    return f"tenant/{tenant}/load_balancer/{name}"


def member_origin(tenant: str, lb: str, port: str) -> str:
    return f"{lb_origin(tenant, lb)}/member/{port}"


def vip_mac(tenant: str, name: str) -> str:
    return router_mac(f"{tenant}/load_balancer/{name}/vip")


def balancer_views(topo: Topology, hv: str, inv: Inventory) -> list[LbOnHv]:
    here = {(r.tenant, r.network.name) for r in topo.ports_on(hv)}
    out = []
    for t in topo.config.tenants:
        hairpin = _hairpin_ips(t)
        for lb in t.load_balancers:
            router = topo.router_of(t.name, lb.network)
            reach = [lb.network] if router is None else [i.network.name for i in router.interfaces]
            clients = sorted(topo.network(t.name, n).vni for n in reach if (t.name, n) in here)
            if not clients:
                continue  # no port here may call it
            origin = lb_origin(t.name, lb.name)
            members = tuple(_member(topo, t.name, lb, m, router, hairpin) for m in lb.members)
            local = tuple(member_origin(t.name, lb.name, m.port) for m in lb.members
                          if topo.port(t.name, m.port).port.hypervisor == hv)
            out.append(LbOnHv(origin, t.zone, t.hairpin_zone, str(lb.vip.ip), lb.vip.protocol,
                              lb.vip.port, vip_mac(t.name, lb.name),
                              topo.network(t.name, lb.network).vni,
                              (t.name, lb.network) in here, tuple(clients), members, local,
                              lb.affinity or 0,
                              lb.health_check is not None,
                              tuple(m.origin for m in members if m.origin in inv.down_members)))
    return out


def _member(topo: Topology, tenant: str, lb, m, router, hairpin: dict) -> LbMember:
    ref = topo.port(tenant, m.port)
    next_mac = ref.port.mac if ref.network.name == lb.network else next(
        i.mac for i in router.interfaces if i.network.name == lb.network)
    return LbMember(member_origin(tenant, lb.name, m.port), ref.ips[0], ref.port.mac,
                    m.target_port, m.weight, vni=ref.network.vni, next_mac=next_mac,
                    hairpin_ip=hairpin[m.port, m.target_port, lb.vip.protocol])


def _hairpin_ips(t) -> dict[tuple, str]:
    """(member port, target port, protocol) -> the lowest VIP of the tenant that has it."""
    out: dict[tuple, IPv4Address] = {}
    for lb in t.load_balancers:
        for m in lb.members:
            key = (m.port, m.target_port, lb.vip.protocol)
            out[key] = min(out.get(key, lb.vip.ip), lb.vip.ip)
    return {k: str(v) for k, v in out.items()}
