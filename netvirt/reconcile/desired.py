"""Assemble one hypervisor's desired OpenFlow state from every compiler stage.

Stages compile one network at a time, from its view (netvirt.topology.views): a pure
function of plain values.  A Compiler remembers each view's result, so a revision that
changes one port recompiles one network on each hypervisor, not all of them.
"""
from __future__ import annotations

from collections.abc import Mapping
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
    by_key: Mapping[tuple, Flow]  # (table, priority, cookie) -> Flow; read-only
    groups: frozenset[Group]

    @property
    def flows(self):
        return self.by_key.values()

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
    """Compiles one hypervisor again and again, reusing the networks whose view is unchanged,
    and keeps the desired state's index up to date by the changed networks alone: a one-port
    change costs the views' hashes plus that network's flows, not a pass over every flow.
    It holds the results of the last compile only."""

    def __init__(self):
        self.recompiled = 0  # networks compiled (not reused) by the last compile
        self._reset()

    def _reset(self) -> None:
        self._last: dict[NetworkOnHv, tuple] = {}
        self._by_key: dict[tuple, Flow] = {}
        self._slots: set[tuple] = set()
        self._add(pipeline_defaults())

    def compile(self, topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
        with gc_paused():
            try:
                return self._compile(network_views(topo, hv, inv))
            except Exception:
                self._reset()  # a half-updated index must not outlive a failure
                raise

    def _compile(self, views: list[NetworkOnHv]) -> DesiredFlows:
        done = {v: self._last.get(v) for v in views}
        for v, (flows, _) in self._last.items():
            if v not in done:
                self._remove(flows)
        added = [v for v, result in done.items() if result is None]
        for v in added:
            done[v] = compile_network(v)
            self._add(done[v][0])
        self._last, self.recompiled = done, len(added)
        groups = frozenset(g for _, net_groups in done.values() for g in net_groups)
        if len({g.group_id for g in groups}) != len(groups):
            _collision([g.group_id for g in groups], "group id")
        return DesiredFlows(dict(self._by_key), groups)

    def _add(self, flows) -> None:
        for f in flows:
            if f.key in self._by_key:
                _collision([f.key, f.key], "flow cookie")
            if f.slot in self._slots:
                _collision([f.slot, f.slot], "flow match")
            self._by_key[f.key] = f
            self._slots.add(f.slot)

    def _remove(self, flows) -> None:
        for f in flows:
            del self._by_key[f.key]
            self._slots.discard(f.slot)


def compile_flows(topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
    """One hypervisor's desired state, compiled from scratch."""
    return Compiler().compile(topo, hv, inv)


def _collision(keys: list, what: str) -> None:
    seen, dup = set(), []
    for k in keys:
        if k in seen:
            dup.append(k)
        seen.add(k)
    # A compiler bug (or a 32-bit digest collision): refuse rather than install half of it.
    raise AssertionError(f"{what} collision in compiled state: {dup[:3]}")
