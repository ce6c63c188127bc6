"""Semantic checks of security groups, firewalled ports and allowed address pairs.  Each
yields (yaml path, message), as config.checks does; port_range() is the one reading of a
rule's `ports`, which the compiler uses too."""
from __future__ import annotations

from collections.abc import Iterator

from netvirt.config.schema import Config, Rule, Tenant
from netvirt.config.unknown import not_defined

Problem = tuple[tuple, str]


def port_range(rule: Rule) -> tuple[int, int] | None:
    if rule.ports is None:
        return None
    lo, _, hi = rule.ports.partition("-")
    return int(lo), int(hi or lo)


def check_firewall(cfg: Config) -> Iterator[Problem]:
    groups_of = {t.name: {g.name for g in t.security_groups} for t in cfg.tenants}
    for ti, t in enumerate(cfg.tenants):
        tp = ("tenants", ti)
        seen: dict[str, int] = {}
        for gi, g in enumerate(t.security_groups):
            gp = tp + ("security_groups", gi)
            if g.name in seen:
                yield gp + ("name",), (f"duplicate security group name {g.name!r} (also "
                                       f"security group #{seen[g.name] + 1}); rename one")
            seen.setdefault(g.name, gi)
            rules: dict[Rule, int] = {}
            for ri, r in enumerate(g.rules):
                rp = gp + ("rules", ri)
                yield from _rule(r, rp, t, groups_of)
                if r in rules:
                    yield rp, (f"the same rule as rule #{rules[r] + 1} of group {g.name!r}; "
                               f"remove one")
                rules.setdefault(r, ri)
        yield from _ports(t, tp, groups_of[t.name])


def _rule(r: Rule, rp: tuple, t: Tenant, groups_of: dict) -> Iterator[Problem]:
    if r.ports is not None:
        if r.protocol not in ("tcp", "udp"):
            yield rp + ("ports",), (f"ports only apply to tcp and udp, and this rule is "
                                    f"{r.protocol}: it would never match; set protocol: tcp "
                                    f"or udp, or remove ports")
        lo, hi = port_range(r)
        if lo > hi:
            yield rp + ("ports",), f"port range {r.ports} is out of order; write {hi}-{lo}"
    if (r.icmp_type is not None or r.icmp_code is not None) and r.protocol != "icmp":
        key = "icmp_type" if r.icmp_type is not None else "icmp_code"
        yield rp + (key,), (f"{key} only applies to icmp, and this rule is {r.protocol}: it "
                            f"would never match; set protocol: icmp, or remove {key}")
    elif r.icmp_code is not None and r.icmp_type is None:
        yield rp + ("icmp_code",), "icmp_code needs an icmp_type; add one"
    if r.remote_cidr is not None and r.remote_group is not None:
        yield rp + ("remote_group",), ("a rule's remote side is a CIDR or a group, not both; "
                                       "make two rules")
    g = r.remote_group
    if g is not None and g not in groups_of[t.name]:
        owners = sorted(name for name, gs in groups_of.items() if g in gs and name != t.name)
        if owners:
            yield rp + ("remote_group",), (
                f"security group {g!r} is tenant {owners[0]!r}'s; a rule may only name "
                f"groups of its own tenant ({t.name!r})")
        else:
            yield rp + ("remote_group",), not_defined("security group", g, t.name,
                                                      groups_of[t.name])


def _ports(t: Tenant, tp: tuple, groups: set[str]) -> Iterator[Problem]:
    fixed = {(p.network, ip): p.name for p in t.ports for ip in p.ips}
    for pi, p in enumerate(t.ports):
        pp = tp + ("ports", pi)
        for k, g in enumerate(p.security_groups or ()):
            if g not in groups:
                yield pp + ("security_groups", k), not_defined("security group", g, t.name,
                                                               groups)
            elif p.security_groups.index(g) != k:
                yield pp + ("security_groups", k), f"security group {g!r} is listed twice"
        for k, pair in enumerate(p.allowed_address_pairs):
            owner = fixed.get((p.network, pair.ip))
            if owner is not None:
                why = "its own address" if owner == p.name else f"the address of port {owner!r}"
                yield pp + ("allowed_address_pairs", k, "ip"), (
                    f"{pair.ip} is {why} in network {p.network!r}; an address pair is an "
                    f"extra address no port has")


def permits(t: Tenant, src, dst, proto: str, dport: int | None = None,
            icmp_type: int | None = None, icmp_code: int | None = None) -> bool:
    """Whether tenant ``t``'s security groups let a new connection from port ``src`` to
    port ``dst`` (both of ``t``) through: ``src``'s egress rules, then ``dst``'s ingress
    rules, evaluated on the config itself.  The reference the compiled firewall is held to
    (the isolation proof, the tests), and what `lab matrix` expects of a ping."""
    return Intent(t).permits(src, dst, proto, dport, icmp_type, icmp_code)


class Intent:
    """``permits`` for one tenant, its groups' members worked out once (the isolation proof
    asks it about every pair of ports)."""

    def __init__(self, t: Tenant):
        self.t = t
        self.groups = {g.name: g for g in t.security_groups}
        self.members: dict[str, set] = {}
        for p in t.ports:
            for g in p.security_groups or ():
                self.members.setdefault(g, set()).update(
                    [*p.ips, *(a.ip for a in p.allowed_address_pairs)])

    def permits(self, src, dst, proto: str, dport: int | None = None,
                icmp_type: int | None = None, icmp_code: int | None = None) -> bool:
        packet = (proto, dport, icmp_type, icmp_code)
        return (self.side(src, "egress", dst.ips[0], packet)
                and self.side(dst, "ingress", src.ips[0], packet))

    def side(self, port, direction: str, remote, packet) -> bool:
        """Whether ``port``'s rules of ``direction`` (or the tenant's default) let a new
        connection ``packet`` (protocol, port, ICMP type, code) to or from address
        ``remote`` through."""
        if port.security_groups is None:
            return True
        for name in port.security_groups:
            for r in self.groups[name].rules:
                if r.direction == direction and _matches(r, remote, packet, self.members):
                    return True
        fw = self.t.firewall
        return (fw.ingress if direction == "ingress" else fw.egress) == "allow"


def _matches(r: Rule, remote, packet, members) -> bool:
    proto, dport, icmp_type, icmp_code = packet
    if r.protocol != "any" and r.protocol != proto:
        return False
    if r.ports is not None:
        lo, hi = port_range(r)
        if dport is None or not lo <= dport <= hi:
            return False
    if r.icmp_type is not None and r.icmp_type != icmp_type:
        return False
    if r.icmp_code is not None and r.icmp_code != icmp_code:
        return False
    if r.remote_group is not None:
        return remote in members.get(r.remote_group, ())
    return r.remote_cidr is None or remote in r.remote_cidr
