"""The features that make a hypervisor's OpenFlow state, in one list.

A feature says which views of the topology it compiles on a hypervisor (one per network,
per router, per port: any hashable value of plain data) and how one view compiles to flows
and groups; it may add fixed flows every br-int has.  The memoising Compiler works the same
for every feature: a revision recompiles only the views it changed.  Adding a network
function is adding its stages (pipeline/stages.py) and a Feature here.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from netvirt import overlay
from netvirt.nfv import dhcp, firewall, gateway, load_balancer, router
from netvirt.qos.flows import compile_qos
from netvirt.pipeline.layout import PUNT_BURST, PUNT_METER_ID, PUNT_RATE
from netvirt.pipeline.records import PIPELINE_ORIGIN, Flow, Group, Meter
from netvirt.topology.balancer import balancer_views
from netvirt.topology.qos import qos_views
from netvirt.topology.security import firewall_views
from netvirt.topology.views import external_views, network_views, router_views


@dataclass(frozen=True)
class Feature:
    name: str
    # (topology, hypervisor, inventory) -> the views to compile there
    views: Callable[..., Iterable[Hashable]]
    compile: Callable[[Hashable], tuple[Sequence[Flow], Sequence[Group], Sequence[Meter]]]
    fixed: Callable[[], Sequence[Flow]] = tuple
    meters: Callable[[], Sequence[Meter]] = tuple  # every br-int has these


def _punt_meter() -> list[Meter]:
    return [Meter(PUNT_METER_ID, PUNT_RATE, PUNT_BURST, "pktps", PIPELINE_ORIGIN)]


FEATURES: tuple[Feature, ...] = (
    Feature("overlay", network_views, overlay.compile_network, overlay.fixed_flows,
            _punt_meter),
    Feature("dhcp", dhcp.dhcp_views, dhcp.compile_dhcp),
    Feature("router-attachment", router.routed_views, router.compile_attachment),
    Feature("router", router_views, router.compile_router),
    Feature("gateway", router_views, gateway.compile_gateway),
    Feature("external", external_views, gateway.compile_external),
    Feature("firewall", firewall_views, firewall.compile_firewall),
    Feature("load-balancer", balancer_views, load_balancer.compile_balancer),
    Feature("qos", qos_views, compile_qos),
)
