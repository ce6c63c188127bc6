"""ARP_RESPONDER: answer ARP requests for every known port of the network on the hypervisor
where they are asked, so ARP broadcasts never cross tunnels.  Requests for unknown addresses
continue to L2_LOOKUP and are flooded inside the network."""
from __future__ import annotations

from netvirt.controller.flows import Flow, Goto, Move, Output, SetField
from netvirt.controller.pipeline import NET_AND_ORIGIN_MASK, Table
from netvirt.controller.port_security import ETH_ARP
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

T = Table.ARP_RESPONDER
ARP_REQUEST, ARP_REPLY = 1, 2


def compile_arp_responder(topo: Topology, hv: str, inv: Inventory) -> list[Flow]:
    flows = [Flow.make(T, 0, {}, [Goto(T.next())], "pipeline/ARP_RESPONDER")]
    for tenant, net in topo.networks_on(hv):
        for ref in topo.ports_of(tenant, net.name):
            mac = ref.port.mac
            for ip in ref.ips:
                flows.append(Flow.make(
                    T, 100,
                    # only requests from local VMs: metadata "from tunnel" bit must be clear
                    {"metadata": (net.vni, NET_AND_ORIGIN_MASK), "eth_type": ETH_ARP,
                     "arp_op": ARP_REQUEST, "arp_tpa": ip},
                    [Move("eth_src", "eth_dst", 48), SetField("eth_src", mac),
                     SetField("arp_op", ARP_REPLY), Move("arp_sha", "arp_tha", 48),
                     Move("arp_spa", "arp_tpa", 32), SetField("arp_sha", mac),
                     SetField("arp_spa", ip), Output("IN_PORT")],
                    ref.origin))
    return flows
