"""What one tenant's firewall looks like from one hypervisor: its firewalled ports there, the
rules of the security groups they use (a remote group resolved to its members' addresses,
wherever they are) and the tenant's defaults.  Plain values, like the network views, so the
compile of a view is remembered until a port, a rule or a member changes.

A rule's id is the ct_mark of the connections it allows.  It is derived from the rule's
content and its group, not its place in the file: reordering rules changes no id and cuts
no connection; changing a rule makes it a new rule.
"""
from __future__ import annotations

import json
from typing import NamedTuple

from netvirt.config.firewall import port_range
from netvirt.config.schema import Rule, Tenant
from netvirt.pipeline.layout import IP_PROTOCOLS
from netvirt.pipeline.records import h32
from netvirt.topology.graph import Topology
from netvirt.topology.inventory import Inventory


class FwPort(NamedTuple):
    origin: str  # tenant/T/port/P
    ofport: int
    zone: int  # its conntrack zone: both directions of the port, no other port's
    groups: tuple[str, ...]


class FwRule(NamedTuple):
    origin: str  # tenant/T/security_group/G/rule/I
    rule_id: int
    group: str
    direction: str  # "ingress" (to the port) or "egress" (from it)
    protocol: int | None  # IP protocol; None: any
    ports: tuple[int, int] | None  # destination port range (tcp, udp)
    icmp_type: int | None
    icmp_code: int | None
    remote: tuple[str, ...] | None  # CIDRs or member addresses; None: anywhere


class FirewallOnHv(NamedTuple):
    origin: str  # tenant/T/firewall
    ports: tuple[FwPort, ...]  # firewalled ports of the tenant bound here, by ofport
    rules: tuple[FwRule, ...]  # of the groups those ports use
    allow_ingress: bool  # the tenant's defaults
    allow_egress: bool

    @property
    def key(self) -> int:
        """The tenant's 30-bit key in REG_FW: its rules' clause flows match it, so that two
        tenants' identical clauses (tcp 80 from anywhere) are two flows, not one clash."""
        return nonzero(h32(self.origin) >> 2)

    def default_id(self, direction: str) -> int:
        """The mark of connections the default let through (while it is allow)."""
        return nonzero(h32(f"{self.origin}/default/{direction}"))


def nonzero(v: int) -> int:
    return v or 1  # ct_mark 0 is a connection nothing committed a mark for


def rule_id(tenant: str, group: str, rule: Rule) -> int:
    return nonzero(h32(f"{tenant}/{group}/" + json.dumps(rule.model_dump(mode="json"),
                                                         sort_keys=True)))


def firewall_views(topo: Topology, hv: str, inv: Inventory) -> list[FirewallOnHv]:
    local: dict[str, list[FwPort]] = {}
    for ref in topo.ports_on(hv):
        p = ref.port
        if p.security_groups is None:
            continue
        ofport = inv.ofports.get(p.interface)
        if ofport is not None and ofport > 0:
            local.setdefault(ref.tenant, []).append(
                FwPort(ref.origin, ofport, p.zone, tuple(p.security_groups)))
    tenants = {t.name: t for t in topo.config.tenants}
    return [_view(tenants[name], sorted(ports, key=lambda p: p.ofport))
            for name, ports in sorted(local.items())]


def _view(t: Tenant, ports: list[FwPort]) -> FirewallOnHv:
    used = {g for p in ports for g in p.groups}
    members: dict[str, list[str]] = {}
    for p in t.ports:
        for g in p.security_groups or ():
            members.setdefault(g, []).extend(
                [str(ip) for ip in p.ips] + [str(a.ip) for a in p.allowed_address_pairs])
    rules = []
    for g in t.security_groups:
        if g.name not in used:
            continue
        for i, r in enumerate(g.rules):
            if r.remote_group is not None:
                remote = tuple(sorted(set(members.get(r.remote_group, ()))))
            elif r.remote_cidr is not None and r.remote_cidr.prefixlen > 0:
                remote = (str(r.remote_cidr),)
            else:
                remote = None
            rules.append(FwRule(f"tenant/{t.name}/security_group/{g.name}/rule/{i}",
                                rule_id(t.name, g.name, r), g.name, r.direction,
                                IP_PROTOCOLS.get(r.protocol), port_range(r), r.icmp_type,
                                r.icmp_code, remote))
    return FirewallOnHv(f"tenant/{t.name}/firewall", tuple(ports), tuple(rules),
                        t.firewall.ingress == "allow", t.firewall.egress == "allow")
