"""Assemble one hypervisor's desired OpenFlow state from every feature.

Features compile one view at a time (netvirt.reconcile.features): a pure function of plain
values.  A Compiler remembers each view's result, so a revision that changes one port
recompiles one network on each hypervisor, not all of them.

Every flow is checked against its declared stage (netvirt.pipeline.stages).  Two views or
stages that want the very same flow get one flow with both origins (as OVN links several
logical flows to one installed flow); two that want one match with different actions are a
PipelineError naming both, never a silent overwrite.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netvirt.errors import PipelineError
from netvirt.gcpause import gc_paused
from netvirt.pipeline.records import Flow, Group, Meter
from netvirt.pipeline.stages import check_flow, miss_flows
from netvirt.reconcile.features import FEATURES, Feature
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory


@dataclass(frozen=True)
class DesiredFlows:
    by_key: Mapping[tuple, Flow]  # (table, priority, cookie) -> Flow; read-only
    groups: frozenset[Group]
    meters: frozenset[Meter] = frozenset()

    @property
    def flows(self):
        return self.by_key.values()

    def dump(self) -> str:
        """Sorted, named, one line per flow: the golden-file format."""
        lines = [str(f) for f in sorted(self.flows)]
        lines += [str(g) for g in sorted(self.groups, key=lambda g: g.group_id)]
        lines += [str(m) for m in sorted(self.meters)]
        return "\n".join(lines) + "\n"


def fixed_flows(features: tuple[Feature, ...] = FEATURES) -> list[Flow]:
    """The flows every br-int has whatever its tenants: stage misses and features' fixed
    flows."""
    return miss_flows() + [f for feature in features for f in feature.fixed()]


class Compiler:
    """Compiles one hypervisor again and again, reusing the views whose value is unchanged,
    and keeps the desired state's index up to date by the changed views alone: a one-port
    change costs the views' hashes plus that network's flows, not a pass over every flow.
    It holds the results of the last compile only."""

    def __init__(self, features: tuple[Feature, ...] = FEATURES):
        self.features = features
        self.recompiled = 0  # views compiled (not reused) by the last compile
        self._reset()

    def _reset(self) -> None:
        # (feature index, view) -> (flows, groups, meters)
        self._last: dict[tuple, tuple] = {}
        self._by_key: dict[tuple, Flow] = {}
        self._by_slot: dict[tuple, Flow] = {}
        self._shared: dict[tuple, list[Flow]] = {}  # slot -> its wanters, where several
        fixed = fixed_flows(self.features)
        for f in fixed:
            check_flow(f)
        self._add(fixed)
        self._meters = frozenset(m for feature in self.features for m in feature.meters())
        if len({m.meter_id for m in self._meters}) != len(self._meters):
            raise PipelineError(f"two features declare one meter id: {sorted(self._meters)}")

    def compile(self, topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
        with gc_paused():
            try:
                views = [(i, v) for i, feature in enumerate(self.features)
                         for v in feature.views(topo, hv, inv)]
                return self._compile(views)
            except Exception:
                self._reset()  # a half-updated index must not outlive a failure
                raise

    def _compile(self, views: list[tuple]) -> DesiredFlows:
        done = {v: self._last.get(v) for v in views}
        for v, (flows, _, _) in self._last.items():
            if v not in done:
                self._remove(flows)
        added = [v for v, result in done.items() if result is None]
        for v in added:
            flows, groups, meters = self.features[v[0]].compile(v[1])
            by_id = {g.group_id: g for g in groups}
            for f in flows:
                check_flow(f, by_id)
            done[v] = (tuple(flows), tuple(groups), tuple(meters))
            self._add(flows)
        self._last, self.recompiled = done, len(added)
        groups = frozenset(g for _, view_groups, _ in done.values() for g in view_groups)
        if len({g.group_id for g in groups}) != len(groups):
            seen: dict[int, Group] = {}
            for g in groups:
                if g.group_id in seen:
                    raise PipelineError(f"group id {g.group_id:#x} of {g.origin} is also "
                                        f"{seen[g.group_id].origin}'s, with other buckets "
                                        f"(a 31-bit digest collision); nothing installed")
                seen[g.group_id] = g
        meters = self._meters.union(m for _, _, view_meters in done.values()
                                    for m in view_meters)
        if len({m.meter_id for m in meters}) != len(meters):
            raise PipelineError(f"two origins want one meter id with other bands: "
                                f"{sorted(meters)}; nothing installed")
        return DesiredFlows(dict(self._by_key), groups, meters)

    def _put(self, old: Flow | None, new: Flow | None) -> None:
        if old is not None:
            del self._by_key[old.key]
            del self._by_slot[old.slot]
        if new is not None:
            if new.key in self._by_key:  # a 32-bit digest collision with another flow
                raise PipelineError(f"cookie collision: {new} and {self._by_key[new.key]}; "
                                    f"nothing installed")
            self._by_key[new.key] = new
            self._by_slot[new.slot] = new

    def _add(self, flows) -> None:
        for f in flows:
            cur = self._by_slot.get(f.slot)
            if cur is None:
                self._put(None, f)
                continue
            if cur.actions != f.actions:
                raise PipelineError(
                    f"two origins want one match with different actions:\n  {cur}\n  {f}\n"
                    f"(a compiler bug, or two config objects that claim the same packet); "
                    f"nothing installed")
            wanters = self._shared.setdefault(f.slot, [cur])
            wanters.append(f)
            self._put(cur, cur.merged(f))

    def _remove(self, flows) -> None:
        for f in flows:
            cur = self._by_slot[f.slot]
            wanters = self._shared.get(f.slot)
            if wanters is None:
                self._put(cur, None)
                continue
            wanters.remove(f)
            merged = wanters[0]
            for w in wanters[1:]:
                merged = merged.merged(w)
            if len(wanters) == 1:
                del self._shared[f.slot]
            self._put(cur, merged)


def compile_flows(topo: Topology, hv: str, inv: Inventory) -> DesiredFlows:
    """One hypervisor's desired state, compiled from scratch."""
    return Compiler().compile(topo, hv, inv)
