"""Assemble one hypervisor's desired OpenFlow state from every compiler stage."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from netvirt.controller.arp_responder import compile_arp_responder
from netvirt.controller.classify import compile_classify
from netvirt.controller.flows import Flow, Group
from netvirt.controller.l2 import compile_l2
from netvirt.controller.port_security import compile_port_security
from netvirt.gcpause import gc_paused
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory


@dataclass(frozen=True)
class DesiredFlows:
    flows: frozenset[Flow]
    groups: frozenset[Group]

    def dump(self) -> str:
        """Sorted, named, one line per flow: the golden-file format."""
        lines = [str(f) for f in sorted(self.flows)]
        lines += [str(g) for g in sorted(self.groups, key=lambda g: g.group_id)]
        return "\n".join(lines) + "\n"


def compile_flows(topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
    with gc_paused():
        return _compile_flows(topo, hv, inv)


def _compile_flows(topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
    flows = []
    flows += compile_classify(topo, hv, inv)
    flows += compile_port_security(topo, hv, inv)
    flows += compile_arp_responder(topo, hv, inv)
    l2_flows, groups = compile_l2(topo, hv, inv)
    flows += l2_flows
    _check_unique([f.key for f in flows], "flow cookie")
    _check_unique([(f.table, f.priority, f.match) for f in flows], "flow match")
    _check_unique([g.group_id for g in set(groups)], "group id")
    return DesiredFlows(frozenset(flows), frozenset(groups))


def _check_unique(keys: list, what: str) -> None:
    dup = [k for k, n in Counter(keys).items() if n > 1]
    if dup:
        # A compiler bug (or a 32-bit digest collision): refuse rather than install half of it.
        raise AssertionError(f"{what} collision in compiled state: {dup[:3]}")
