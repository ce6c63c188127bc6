"""ARP_RESPONDER: the hypervisor that hosts an address answers ARP requests for it, from its
own VMs and from the other hypervisors of the network alike.  A request for an address on
another hypervisor floods once over the network's tunnels; the owner answers it back through
the tunnel, and every other hypervisor drops it, so a guest never sees an ARP broadcast from
another hypervisor.  (Answering every address on every hypervisor would save that one
underlay round trip per resolution at the price of a flow per port per hypervisor.)"""
from __future__ import annotations

from netvirt.controller.flows import Flow, Goto, Move, Output, SetField
from netvirt.controller.pipeline import TUNNEL_OFPORT, VNI_MASK, Table
from netvirt.controller.port_security import ETH_ARP
from netvirt.topology.views import NetworkOnHv

T = Table.ARP_RESPONDER
ORIGIN = "pipeline/ARP_RESPONDER"
ARP_REQUEST, ARP_REPLY = 1, 2


def arp_responder_defaults() -> list[Flow]:
    return [Flow.make(T, 0, {}, [Goto(T.next())], ORIGIN),
            # a request from another hypervisor for an address this one does not host
            Flow.make(T, 50, {"in_port": TUNNEL_OFPORT, "eth_type": ETH_ARP,
                              "arp_op": ARP_REQUEST}, [], ORIGIN)]


def compile_arp_responder(net: NetworkOnHv) -> list[Flow]:
    flows = []
    for port in net.local:  # bound or not: the address is this hypervisor's to answer for
        for ip in port.ips:
            flows.append(Flow.make(
                T, 100,
                {"metadata": (net.vni, VNI_MASK), "eth_type": ETH_ARP, "arp_op": ARP_REQUEST,
                 "arp_tpa": ip},
                [Move("eth_src", "eth_dst", 48), SetField("eth_src", port.mac),
                 SetField("arp_op", ARP_REPLY), Move("arp_sha", "arp_tha", 48),
                 Move("arp_spa", "arp_tpa", 32), SetField("arp_sha", port.mac),
                 SetField("arp_spa", ip),
                 # back where the request came from: the asking VM's port, or the tunnel to
                 # the asking hypervisor (same VNI); for a VM port tun_* is unused
                 Move("tun_ipv4_src", "tun_ipv4_dst", 32), Output("IN_PORT")],
                port.origin))
    return flows
