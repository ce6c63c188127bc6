"""PORT_SECURITY: a VM may only send from its own MAC, and IPv4/ARP only from its own
addresses.  Everything else from a VM port (spoofed MAC or IP, other ethertypes) drops."""
from __future__ import annotations

from netvirt.controller.flows import Flow, Goto
from netvirt.controller.pipeline import Table
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

T = Table.PORT_SECURITY
ETH_IP, ETH_ARP = 0x0800, 0x0806


def compile_port_security(topo: Topology, hv: str, inv: Inventory) -> list[Flow]:
    flows = [Flow.make(T, 0, {}, [], "pipeline/PORT_SECURITY")]
    for ref, ofport in inv.bound_ports(topo, hv):
        mac = ref.port.mac
        for ip in ref.ips:
            base = {"in_port": ofport, "eth_src": mac}
            flows.append(Flow.make(T, 100, {**base, "eth_type": ETH_IP, "ipv4_src": ip},
                                   [Goto(T.next())], ref.origin))
            flows.append(Flow.make(T, 100, {**base, "eth_type": ETH_ARP, "arp_spa": ip,
                                            "arp_sha": mac}, [Goto(T.next())], ref.origin))
    return flows
