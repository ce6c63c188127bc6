"""QoS policies: which one a port has, and the semantic checks.  Each check yields (yaml
path, message), as config.checks does."""
from __future__ import annotations

from collections.abc import Iterator

from netvirt.config.schema import Config, Network, Port, QosDirection, QosPolicy, Tenant
from netvirt.config.units import show_time
from netvirt.config.unknown import not_defined

Problem = tuple[tuple, str]
ETHERNET_HEADER = 14
# what netem does: a VM's own traffic is read by its switch before tc could delay it
_NETEM_KEYS = ("latency", "jitter", "jitter_correlation", "loss", "loss_correlation")


def policy_named(t: Tenant, name: str | None) -> QosPolicy | None:
    return next((q for q in t.qos_policies if q.name == name), None) if name else None


def port_policy(t: Tenant, p: Port, network: Network) -> QosPolicy | None:
    """The policy a port's own traffic gets: its own, else its network's."""
    return policy_named(t, p.qos_policy or network.qos_policy)


def aggregate_policy(t: Tenant) -> QosPolicy | None:
    return policy_named(t, t.aggregate_qos_policy)


def check_qos(cfg: Config) -> Iterator[Problem]:
    for ti, t in enumerate(cfg.tenants):
        yield from _tenant(t, ("tenants", ti))


def _tenant(t: Tenant, tp: tuple) -> Iterator[Problem]:
    policies = {q.name: q for q in t.qos_policies}
    mtu_of: dict[str, int] = {}  # policy -> the largest MTU of a network it applies to
    nets = {n.name: n for n in t.networks}
    for ni, n in enumerate(t.networks):
        if n.qos_policy is not None:
            if n.qos_policy not in policies:
                yield tp + ("networks", ni, "qos_policy"), not_defined(
                    "QoS policy", n.qos_policy, t.name, policies)
            mtu_of[n.qos_policy] = max(mtu_of.get(n.qos_policy, 0), n.mtu)
    for pi, p in enumerate(t.ports):
        if p.qos_policy is not None:
            if p.qos_policy not in policies:
                yield tp + ("ports", pi, "qos_policy"), not_defined(
                    "QoS policy", p.qos_policy, t.name, policies)
            mtu = nets[p.network].mtu if p.network in nets else 0
            mtu_of[p.qos_policy] = max(mtu_of.get(p.qos_policy, 0), mtu)
    agg = t.aggregate_qos_policy
    if agg is not None:
        if agg not in policies:
            yield tp + ("aggregate_qos_policy",), not_defined("QoS policy", agg, t.name,
                                                              policies)
        mtu_of[agg] = max([mtu_of.get(agg, 0)] + [n.mtu for n in t.networks])
    for qi, q in enumerate(t.qos_policies):  # (unique names: config.checks)
        qp = tp + ("qos_policies", qi)
        if q.to_vm is None and q.from_vm is None:
            yield qp, (f"QoS policy {q.name!r} says nothing: give it to_vm or from_vm (or "
                       f"both)")
        for side in ("to_vm", "from_vm"):
            d = getattr(q, side)
            if d is not None:
                yield from _direction(d, side, qp + (side,), mtu_of.get(q.name, 0),
                                      aggregate=q.name == agg)


def _direction(d: QosDirection, side: str, dp: tuple, mtu: int,
               aggregate: bool) -> Iterator[Problem]:
    given = d.model_fields_set
    if not any(getattr(d, k) is not None for k in given):
        yield dp, f"{side} says nothing: give it a rate, latency, loss{' or dscp' * (side == 'from_vm')}"
    if aggregate:
        for key in sorted(given - {"rate", "burst"}):
            yield dp + (key,), (
                f"this policy is the tenant's aggregate_qos_policy, a rate its ports on a "
                f"hypervisor share (one meter): it takes rate and burst only; give {key} "
                f"in a policy of the ports or networks")
        if d.rate is None:
            yield dp, "an aggregate policy limits a rate: give rate"
    if side == "from_vm":
        for key in _NETEM_KEYS:
            if key in given:
                yield dp + (key,), (
                    f"{key} applies to traffic to the VM only: a VM's own packets are read "
                    f"by its switch before tc could delay or drop them (on the userspace "
                    f"datapath before tc ingress runs); give it under to_vm of the ports "
                    f"it talks to")
    elif "dscp" in given:
        yield dp + ("dscp",), ("dscp marks the packets a VM sends: give it under from_vm")
    if d.burst is not None and d.rate is None:
        yield dp + ("burst",), "burst is the bucket of a rate: give rate too, or drop burst"
    if d.burst is not None and mtu and d.burst < mtu + ETHERNET_HEADER:
        yield dp + ("burst",), (
            f"burst {d.burst}b is smaller than one frame ({mtu + ETHERNET_HEADER}b at MTU "
            f"{mtu} of a network it applies to): nothing larger would ever pass; give at "
            f"least {mtu + ETHERNET_HEADER}b")
    if d.jitter is not None:
        if d.latency is None:
            yield dp + ("jitter",), "jitter varies a latency: give latency too"
        elif d.jitter > d.latency:
            yield dp + ("jitter",), (
                f"jitter {show_time(d.jitter)} is larger than latency "
                f"{show_time(d.latency)}: a delay cannot "
                f"be negative; give jitter at most the latency")
    if d.jitter_correlation is not None and d.jitter is None:
        yield dp + ("jitter_correlation",), "jitter_correlation needs jitter"
    if d.loss_correlation is not None and d.loss is None:
        yield dp + ("loss_correlation",), "loss_correlation needs loss"
