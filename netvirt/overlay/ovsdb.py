"""Desired OVSDB state of one hypervisor: bridges and the ports netvirt owns on br-int."""
from __future__ import annotations

import re
import secrets

from netvirt.config.allocate import digest
from netvirt.pipeline.layout import INT_BRIDGE, PHY_BRIDGE, TUNNEL_OFPORT, TUNNEL_PORT_NAME
from netvirt.pipeline.rows import EXTERNAL_KEY, OWNER_KEY, QOS_KEY, BridgeRow, OvsdbState, PortRow
from netvirt.topology import Topology
from netvirt.topology.qos import encode_specs, to_vm_specs


def datapath_id(hv: str) -> int:
    """A stable 48-bit datapath id per hypervisor name; the controller maps dpid -> hv."""
    return digest("dpid/" + hv, 6) or 1


# br-int's MAC (other_config:hwaddr) is how a switch connection proves which hypervisor it
# is: a datapath id can be guessed, but this MAC is random, kept in the hypervisor's own
# OVSDB and seen by no one else; the switch reports it as its LOCAL port's address.
_BRIDGE_MAC_RE = re.compile(r"0a(:[0-9a-f]{2}){5}")


def new_bridge_mac() -> str:
    """A random, locally administered unicast MAC (0a:...) for a br-int."""
    return "0a:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


def is_bridge_mac(value: str | None) -> bool:
    """Whether ``value`` is a MAC new_bridge_mac() could have made."""
    return value is not None and bool(_BRIDGE_MAC_RE.fullmatch(value))


def compile_ovsdb(topo: Topology, hv: str, datapath_type: str, bridge_mac: str) -> OvsdbState:
    ctl = topo.config.controller.openflow
    # the to_vm QoS of this hypervisor's VM devices, for its node agent to put in tc: in
    # br-int's row, not in each port's (a port libvirt made is not netvirt's to write)
    specs = to_vm_specs(topo, hv)
    qos = ((QOS_KEY, encode_specs(specs)),) if specs else ()
    bridges = {
        BridgeRow(INT_BRIDGE, datapath_type, "secure", ("OpenFlow13",),
                  (("datapath-id", f"{datapath_id(hv):016x}"), ("disable-in-band", "true"),
                   ("hwaddr", bridge_mac)), ctl, qos),
        BridgeRow(PHY_BRIDGE, datapath_type, "standalone"),
    }
    owned = ((OWNER_KEY, "true"),)
    ports = {PortRow(INT_BRIDGE, TUNNEL_PORT_NAME, "vxlan",
                     (("key", "flow"), ("remote_ip", "flow")), owned, TUNNEL_OFPORT)}
    for e in topo.externals_on(hv):  # the device on the external network, as a gateway's
        ports.add(PortRow(INT_BRIDGE, e.interface, "", (),
                          ((EXTERNAL_KEY, e.name), (OWNER_KEY, "true"))))
    for ref in topo.ports_on(hv):
        kind = "" if ref.port.interface_type == "system" else ref.port.interface_type
        # external_ids in key order, as a row read back from OVSDB has them
        ids = (("attached-mac", ref.port.mac), ("iface-id", f"{ref.tenant}/{ref.port.name}"),
               (OWNER_KEY, "true"))
        ports.add(PortRow(INT_BRIDGE, ref.port.interface, kind, (), ids))
    return OvsdbState(frozenset(bridges), frozenset(ports))
