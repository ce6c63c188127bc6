"""The L2 overlay: its stages (CLASSIFY, PORT_SECURITY, ARP_RESPONDER, L2_LOOKUP; OUTPUT is
the pipeline's own) compiled one network at a time from a NetworkOnHv view, and the OVSDB
rows of a hypervisor (bridges, the tunnel, VM ports)."""
from __future__ import annotations

from netvirt.overlay.arp_responder import arp_responder_fixed, compile_arp_responder
from netvirt.overlay.classify import classify_fixed, compile_classify
from netvirt.overlay.l2 import compile_l2
from netvirt.overlay.port_security import compile_port_security
from netvirt.pipeline.records import Flow, Group, Meter
from netvirt.topology.views import NetworkOnHv


def fixed_flows() -> list[Flow]:
    """Flows every br-int has besides the stages' misses, whatever its networks."""
    return classify_fixed() + arp_responder_fixed()


def compile_network(net: NetworkOnHv) -> tuple[list[Flow], list[Group], list[Meter]]:
    l2_flows, groups, meters = compile_l2(net)
    flows = compile_classify(net) + compile_port_security(net) + compile_arp_responder(net)
    return flows + l2_flows, groups, meters
