"""CLASSIFY: which network does a packet from a tunnel belong to?  A tunnel key is accepted
only from the underlay IP of a hypervisor that may send it: one that hosts the same
network, or one where the network's router routes packets into it (a host of the router's
other networks, its gateway hypervisor); every other tunnel packet drops here.  A
hypervisor without a port of the network accepts none of it.  Packets from VM ports go on to PORT_SECURITY (the stage's miss), which
classifies them by the same flow that checks their source (one flow per address, not two)."""
from __future__ import annotations

from netvirt.pipeline.layout import TUNNEL_OFPORT, VNI_MASK
from netvirt.pipeline.records import PIPELINE_ORIGIN, Flow, Goto, WriteMetadata
from netvirt.pipeline.tables import Table
from netvirt.topology.views import NetworkOnHv

T = Table.CLASSIFY


def classify_fixed() -> list[Flow]:
    # a tunnel packet no network flow accepted: unknown VNI or source
    return [Flow.make(T, 10, {"in_port": TUNNEL_OFPORT}, [], PIPELINE_ORIGIN)]


def compile_classify(net: NetworkOnHv) -> list[Flow]:
    # Tunnel traffic skips PORT_SECURITY (its source was checked where it entered) but not
    # ARP_RESPONDER: this hypervisor answers requests for the addresses it hosts.
    if not net.local:
        return []
    return [Flow.make(T, 100, {"in_port": TUNNEL_OFPORT, "tunnel_id": net.vni, "tun_ipv4_src": peer},
                      [WriteMetadata(net.vni, VNI_MASK), Goto(Table.ARP_RESPONDER)], net.origin)
            for peer in net.senders]
