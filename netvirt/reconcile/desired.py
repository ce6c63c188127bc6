"""Assemble one hypervisor's desired OpenFlow state from every compiler stage.

Stages compile one network at a time, from its view (netvirt.topology.views): a pure
function of plain values.  A Compiler remembers each view's result, so a revision that
changes one port recompiles one network on each hypervisor, not all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

from netvirt.controller.arp_responder import arp_responder_defaults, compile_arp_responder
from netvirt.controller.classify import classify_defaults, compile_classify
from netvirt.controller.flows import Flow, Group
from netvirt.controller.l2 import compile_l2, l2_defaults
from netvirt.controller.port_security import compile_port_security, port_security_defaults
from netvirt.gcpause import gc_paused
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory
from netvirt.topology.views import NetworkOnHv, network_views


@dataclass(frozen=True)
class DesiredFlows:
    flows: frozenset[Flow]
    groups: frozenset[Group]

    def dump(self) -> str:
        """Sorted, named, one line per flow: the golden-file format."""
        lines = [str(f) for f in sorted(self.flows)]
        lines += [str(g) for g in sorted(self.groups, key=lambda g: g.group_id)]
        return "\n".join(lines) + "\n"


def pipeline_defaults() -> list[Flow]:
    """The flows every br-int has whatever its networks: each table's fixed entries."""
    return classify_defaults() + port_security_defaults() + arp_responder_defaults() + l2_defaults()


def compile_network(net: NetworkOnHv) -> tuple[tuple[Flow, ...], tuple[Group, ...]]:
    l2_flows, groups = compile_l2(net)
    flows = compile_classify(net) + compile_port_security(net) + compile_arp_responder(net)
    return tuple(flows + l2_flows), tuple(groups)


class Compiler:
    """Compiles one hypervisor again and again, reusing the networks whose view is unchanged.
    It keeps the results of the last compile only, so it never holds more than one state."""

    def __init__(self):
        self._last: dict[NetworkOnHv, tuple] = {}
        self.recompiled = 0  # networks compiled (not reused) by the last compile

    def compile(self, topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
        with gc_paused():
            views = network_views(topo, hv, inv)
            done = {}
            for v in views:
                result = self._last.get(v)
                if result is None:
                    result = compile_network(v)
                done[v] = result
            self.recompiled = sum(1 for v in views if v not in self._last)
            self._last = done
            flows = pipeline_defaults()
            groups = []
            for net_flows, net_groups in done.values():
                flows += net_flows
                groups += net_groups
            _check_unique([f.key for f in flows], "flow cookie")
            _check_unique([(f.table, f.priority, f.match) for f in flows], "flow match")
            _check_unique([g.group_id for g in set(groups)], "group id")
            return DesiredFlows(frozenset(flows), frozenset(groups))


def compile_flows(topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
    """One hypervisor's desired state, compiled from scratch."""
    return Compiler().compile(topo, hv, inv)


def _check_unique(keys: list, what: str) -> None:
    if len(set(keys)) == len(keys):
        return
    seen, dup = set(), []
    for k in keys:
        if k in seen:
            dup.append(k)
        seen.add(k)
    # A compiler bug (or a 32-bit digest collision): refuse rather than install half of it.
    raise AssertionError(f"{what} collision in compiled state: {dup[:3]}")
