"""ARP_RESPONDER: the hypervisor that hosts an address answers ARP requests for it, from its
own VMs and from the other hypervisors of the network alike.  A request for an address on
another hypervisor floods once over the network's tunnels; the owner answers it back through
the tunnel, and every other hypervisor drops it, so a guest never sees an ARP broadcast from
another hypervisor.  (Answering every address on every hypervisor would save that one
underlay round trip per resolution at the price of a flow per port per hypervisor.)

An ARP packet that is neither a request nor a reply (RARP-style opcodes, InARP, NAK) has no
business in a tenant network: it drops here rather than flood.

The reply leaves by the ingress port directly, not through the egress stages: it is the
pipeline's own answer to the asker, not a packet from one port to another.

An allowed address pair's IP is not answered for: the port that holds it at the moment
(VRRP's master) answers itself.  A request for it is let through to the hypervisors whose
ports have the pair, instead of dropping as a request from a tunnel for an address this
hypervisor does not host."""
from __future__ import annotations

from netvirt.pipeline.actions import arp_reply
from netvirt.pipeline.layout import ARP_REPLY, ARP_REQUEST, ETH_ARP, TUNNEL_OFPORT, VNI_MASK
from netvirt.pipeline.records import PIPELINE_ORIGIN, Flow, Goto
from netvirt.pipeline.stages import following
from netvirt.pipeline.tables import Table
from netvirt.topology.views import NetworkOnHv

T = Table.ARP_RESPONDER


def arp_responder_fixed() -> list[Flow]:
    go_on = [Goto(following(T))]
    return [
        # a request from another hypervisor for an address this one does not host
        Flow.make(T, 50, {"in_port": TUNNEL_OFPORT, "eth_type": ETH_ARP,
                          "arp_op": ARP_REQUEST}, [], PIPELINE_ORIGIN),
        # requests no one here answers, and replies, go on; any other opcode drops
        Flow.make(T, 20, {"eth_type": ETH_ARP, "arp_op": ARP_REQUEST}, go_on, PIPELINE_ORIGIN),
        Flow.make(T, 20, {"eth_type": ETH_ARP, "arp_op": ARP_REPLY}, go_on, PIPELINE_ORIGIN),
        Flow.make(T, 10, {"eth_type": ETH_ARP}, [], PIPELINE_ORIGIN)]


def compile_arp_responder(net: NetworkOnHv) -> list[Flow]:
    flows = []
    for port in net.local:  # bound or not: the address is this hypervisor's to answer for
        for ip in port.ips:
            flows.append(Flow.make(
                T, 100,
                {"metadata": (net.vni, VNI_MASK), "eth_type": ETH_ARP, "arp_op": ARP_REQUEST,
                 "arp_tpa": ip},
                arp_reply(port.mac, ip), port.origin))
        for ip, _ in port.pairs:
            flows.append(Flow.make(
                T, 100,
                {"metadata": (net.vni, VNI_MASK), "eth_type": ETH_ARP, "arp_op": ARP_REQUEST,
                 "arp_tpa": ip}, [Goto(following(T))], port.origin))
    return flows
