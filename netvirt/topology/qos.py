"""What one tenant's QoS looks like from one hypervisor, for the OpenFlow part of it: the
from_vm rate and DSCP mark of each of its ports here, and its aggregate (one meter per
direction, which all its ports here share).  Plain values, like the other views.

The to_vm part of a port's policy (htb and netem on the VM's device) is not OpenFlow's: the
node agent does it (host/node.py), from what overlay/ovsdb.py writes into br-int's OVSDB.
"""
from __future__ import annotations

import json
from typing import NamedTuple

from netvirt.config.qos import ETHERNET_HEADER, aggregate_policy, port_policy
from netvirt.config.schema import QosDirection
from netvirt.config.units import show_rate, show_time
from netvirt.pipeline.layout import qos_aggregate_meter_id
from netvirt.topology.graph import Topology
from netvirt.topology.inventory import Inventory

DEFAULT_METER_BURST = 0.5  # s of the rate: a policer holds TCP near its rate only with a
# bucket of a round trip's worth and more (measured here: 100 ms of it held TCP at half)


DEFAULT_SHAPER_BURST = 0.01  # s of the rate (htb queues what is above it; it drops nothing)


class ToVm(NamedTuple):
    """One device's to_vm policy, as the controller writes it into its hypervisor's OVSDB
    (overlay/ovsdb.py) and the node agent reads it back: rates in bits/s, sizes in bytes,
    times in microseconds, percentages."""

    origin: str  # tenant/T/port/P
    rate: int | None = None
    burst: int = 0
    latency: int = 0
    jitter: int = 0
    jitter_correlation: float = 0.0
    loss: float = 0.0
    loss_correlation: float = 0.0

    @property
    def netem(self) -> bool:
        return bool(self.latency or self.loss)

    def netem_parts(self) -> list[str]:
        """The parts of the policy that need netem, by their YAML names."""
        return [k for k in ("latency", "jitter", "loss") if getattr(self, k)]

    def parts(self) -> list[str]:
        """Every part of the policy, by its YAML name."""
        return ["rate"] * (self.rate is not None) + self.netem_parts()


def to_vm_specs(topo: Topology, hv: str) -> dict[str, ToVm]:
    """interface -> its to_vm policy, for the ports on ``hv`` that have one."""
    out = {}
    for ref in topo.ports_on(hv):
        t = topo.tenant(ref.tenant)
        if not t.qos_policies:
            continue
        q = port_policy(t, ref.port, ref.network)
        d = q.to_vm if q is not None else None
        if d is None:
            continue
        burst = d.burst
        if d.rate is not None and burst is None:
            burst = max(int(d.rate / 8 * DEFAULT_SHAPER_BURST),
                        2 * (ref.network.mtu + ETHERNET_HEADER))
        out[ref.port.interface] = ToVm(ref.origin, d.rate, burst or 0, d.latency or 0,
                                       d.jitter or 0, d.jitter_correlation or 0.0,
                                       d.loss or 0.0, d.loss_correlation or 0.0)
    return out


def encode_specs(specs: dict[str, ToVm]) -> str:
    """For OVSDB: one JSON object, interface -> [the ToVm's fields], in a stable order."""
    return json.dumps({k: list(v) for k, v in sorted(specs.items())}, separators=(",", ":"))


def decode_specs(text: str) -> dict[str, ToVm]:
    """What encode_specs wrote; ValueError if it is not that."""
    try:
        return {k: ToVm(*v) for k, v in json.loads(text).items()}
    except (TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a QoS specification netvirt wrote: {e}") from None


class PortQos(NamedTuple):
    origin: str  # tenant/T/port/P
    ofport: int
    rate_kbps: int | None  # from_vm; None: no rate
    burst_kbits: int
    dscp: int | None


class AggregateQos(NamedTuple):
    origin: str  # tenant/T/qos_policy/P (the aggregate)
    ofports: tuple[int, ...]  # the tenant's ports bound here
    from_vm: tuple[int, int, int] | None  # (meter id, kbps, burst kbits)
    to_vm: tuple[int, int, int] | None


class QosOnHv(NamedTuple):
    origin: str  # tenant/T/qos
    ports: tuple[PortQos, ...]
    aggregate: AggregateQos | None


def meter_rate(d: QosDirection | None) -> tuple[int, int] | None:
    """(kbps, burst kilobits) of an OpenFlow meter for this direction's rate, or None."""
    if d is None or d.rate is None:
        return None
    burst = d.burst * 8 if d.burst is not None else int(d.rate * DEFAULT_METER_BURST)
    return max(1, d.rate // 1000), max(1, burst // 1000)


def qos_views(topo: Topology, hv: str, inv: Inventory) -> list[QosOnHv]:
    tenants = {t.name: t for t in topo.config.tenants}
    aggregated = sorted(t.name for t in topo.config.tenants if aggregate_policy(t) is not None)
    local: dict[str, list] = {}
    for ref in topo.ports_on(hv):
        ofport = inv.ofports.get(ref.port.interface)
        if ofport is not None and ofport > 0:
            local.setdefault(ref.tenant, []).append((ref, ofport))
    views = []
    for name, refs in sorted(local.items()):
        t = tenants[name]
        if not t.qos_policies:
            continue
        ports = []
        for ref, ofport in sorted(refs, key=lambda r: r[1]):
            q = port_policy(t, ref.port, ref.network)
            d = q.from_vm if q is not None else None
            rate = meter_rate(d)
            if rate is not None or (d is not None and d.dscp is not None):
                kbps, burst = rate or (None, 0)
                ports.append(PortQos(ref.origin, ofport, kbps, burst, d.dscp))
        agg = None
        if (a := aggregate_policy(t)) is not None:
            index = aggregated.index(name)

            def meter(d, direction):
                rate = meter_rate(d)
                return None if rate is None else (qos_aggregate_meter_id(index, direction),
                                                  *rate)
            agg = AggregateQos(f"tenant/{name}/qos_policy/{a.name}",
                               tuple(sorted(o for _, o in refs)),
                               meter(a.from_vm, 0), meter(a.to_vm, 1))
        if ports or agg is not None:
            views.append(QosOnHv(f"tenant/{name}/qos", tuple(ports), agg))
    return views


def enforcement(topo: Topology, hv: str, node: str | None, qdiscs: list[str] | None,
                report: dict) -> dict[str, dict]:
    """interface -> what of its to_vm policy ``hv`` does not enforce and why, for its ports
    that have one: {"origin", "parts", "why", "pending"} ("parts" empty: all of it is in
    place; "pending": the node agent has not answered for this policy yet, or waits for
    ovs-vswitchd to open the port, which a VM's start and a new port take a moment to).  ``node``: the
    version of the node agent that reports there (None: none does); ``qdiscs``: what it
    reported its kernel has; ``report``: its QoS report (host/qos.py)."""
    no_netem = qdiscs is not None and "netem" not in qdiscs
    out = {}
    for iface, spec in to_vm_specs(topo, hv).items():
        rep = report.get(iface)
        pending = False
        if node is None:
            parts, why = spec.parts(), f"no node agent reports from {hv}: tc is its job"
        elif rep is not None and rep.get("applied") == list(spec) and not rep.get("waiting"):
            gap = rep.get("not_enforced") or {"parts": [], "why": ""}
            parts, why = gap["parts"], gap["why"]
            if rep.get("error"):
                parts, why = spec.parts(), rep["error"]
        elif no_netem and spec.netem:  # known before the node gets to it
            parts, why, pending = spec.netem_parts(), "this kernel has no sch_netem", True
        else:
            parts, why, pending = [], "", True
        out[iface] = {"origin": spec.origin, "parts": parts, "why": why, "pending": pending}
    return out


def describe(d: QosDirection | None) -> dict | None:
    """A direction of a policy as people write it: {"rate": "10mbit", "latency": "50ms"}."""
    if d is None:
        return None
    out = {}
    for key, value in d.model_dump(exclude_none=True).items():
        if key == "rate":
            value = show_rate(value)
        elif key == "burst":
            value = f"{value}b"
        elif key in ("latency", "jitter"):
            value = show_time(value)
        elif key != "dscp":
            value = f"{value:g}%"
        out[key] = value
    return out
