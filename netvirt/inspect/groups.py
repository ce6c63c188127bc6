"""The isolation proof inside a tenant: whether the compiled firewall lets through more new
connections than the tenant's security groups allow.

The walk (netvirt.inspect.isolation) proves tenants, networks and routers apart, taking every
header field it does not track as any value, so it cannot tell what a firewall passes.  Here
the simulator (netvirt.inspect.simulate, which models conntrack and conjunctions) sends, from
every port of the tenant to every other it may reach (its network, or its router's), the
first packet of a new connection of each protocol class, and compares the verdict with the
rules read from the config itself (config.firewall.permits).  A class is a protocol and a
destination port (or ICMP type and code): the ends of every rule's port range, and of every
port or block of ports a compiled firewall flow matches, the ports just outside them and one
port nothing names, per protocol, so that every range is crossed at both edges; what lies
between two edges is decided alike by the rules and by the flows.  Sources are the ports'
own first addresses (port security drops any other, address pairs aside).  Only a pair with a firewalled
end is sent; a pair with none has no firewall to judge it.

A tenant is sent again only when its flows changed (a digest of the flows whose origin is
the tenant's, on every hypervisor): an apply that changes one tenant re-proves that tenant.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from netvirt.config.firewall import Intent, port_range
from netvirt.inspect.simulate import Network, Step
from netvirt.pipeline.layout import ICMP_ECHO_REQUEST, IP_PROTOCOLS
from netvirt.pipeline.tables import Table
from netvirt.topology import Topology

PROBE_SPORT = 40000  # the source port of every probe: no rule matches source ports
FIREWALL_TABLES = (Table.ACL_FROM_VM, Table.ACL_TO_VM)


@dataclass(frozen=True)
class FirewallViolation:
    source: str  # tenant/port
    target: str  # tenant/port
    packet: str  # the class: "tcp 22", "icmp type 8"
    steps: tuple[Step, ...]  # the simulator's path, each flow with its origin


Class = tuple  # (protocol, destination port, ICMP type, ICMP code), as permits takes them


def classes(tenant, flows=()) -> list[Class]:
    """Every class of new connection the tenant's rules, or the compiled ``flows`` of its
    firewall stages, tell apart: a flow that opens a port no rule names is sent that port."""
    ports: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    icmp = {(ICMP_ECHO_REQUEST, 0)}
    for f in flows:
        m = dict(f.match)
        for proto in ("tcp", "udp"):
            want = m.get(f"{proto}_dst")
            if want is not None:  # a port, or a block of them (value/mask): its edges
                lo, mask = (want, 0xFFFF) if isinstance(want, int) else want
                hi = lo | (~mask & 0xFFFF)
                ports[proto] |= {p for p in (lo - 1, lo, hi, hi + 1) if 1 <= p <= 65535}
        if m.get("icmpv4_type") is not None:
            icmp.add((m["icmpv4_type"], m.get("icmpv4_code") or 0))
    for g in tenant.security_groups:
        for r in g.rules:
            for proto in (("tcp", "udp", "icmp") if r.protocol == "any" else (r.protocol,)):
                if proto == "icmp" and r.icmp_type is not None:
                    code = r.icmp_code or 0
                    icmp |= {(r.icmp_type, code), ((r.icmp_type + 1) % 256, 0),
                             (r.icmp_type, (code + 1) % 256)}
                elif proto != "icmp" and r.ports is not None:
                    lo, hi = port_range(r)
                    ports[proto] |= {p for p in (lo - 1, lo, hi, hi + 1) if 1 <= p <= 65535}
    out: list[Class] = []
    for proto, named in ports.items():
        spare = next(p for p in (7, 9, 13, 19, 37, 2049, 65000) if p not in named)
        out += [(proto, p, None, None) for p in sorted(named | {spare})]
    return out + [("icmp", None, t, c) for t, c in sorted(icmp)]


def describe_class(c: Class) -> str:
    proto, dport, icmp_type, icmp_code = c
    return f"icmp type {icmp_type} code {icmp_code}" if proto == "icmp" else f"{proto} {dport}"


class GroupsProver:
    """Keeps each tenant's answer until its flows change."""

    def __init__(self):
        self._done: dict[str, tuple[str, list[FirewallViolation]]] = {}
        self.sent = 0  # probes sent so far, for the tests and the cost

    def prove(self, topo: Topology, per_hv: Mapping[str, object], net: Network,
              inventories: Mapping[str, object]) -> list[FirewallViolation]:
        out = []
        firewalled = [t for t in topo.config.tenants
                      if any(p.security_groups is not None for p in t.ports)]
        for name in set(self._done) - {t.name for t in firewalled}:
            del self._done[name]  # gone, or nothing firewalled: the walk's proof is whole
        digests = _digests(per_hv) if firewalled else {}
        for t in firewalled:
            digest = digests.get(t.name, "")
            done = self._done.get(t.name)
            if done is None or done[0] != digest:
                done = self._done[t.name] = (digest, self._tenant(topo, t, net, inventories))
            out += done[1]
        return out

    def _tenant(self, topo: Topology, t, net: Network, inventories) -> list[FirewallViolation]:
        refs = [topo.port(t.name, p.name) for p in t.ports]
        placed = []
        for ref in refs:
            ofport = inventories[ref.port.hypervisor].ofports.get(ref.port.interface)
            if ofport:
                placed.append((ref, ofport))
        prefix = f"tenant/{t.name}/"
        kinds = classes(t, [f for table in FIREWALL_TABLES for hv in net.tables
                            for f in net.flows(hv, table) if f.origin.startswith(prefix)])
        intent = Intent(t)
        out = []
        for src, ofport in placed:
            for dst, dst_at in placed:
                if dst is src or (src.port.security_groups is None
                                  and dst.port.security_groups is None):
                    continue
                eth_dst = _next_hop_mac(topo, src, dst)
                if eth_dst is None:
                    continue  # no router between them: the walk proves they never meet
                for c in kinds:
                    if intent.permits(src.port, dst.port, *c):
                        continue  # less than allowed is a fault, not a breach of isolation
                    res = net.fresh().inject(src.port.hypervisor, ofport,
                                             _packet(src, dst, eth_dst, c))
                    self.sent += 1
                    if (dst.port.hypervisor, dst_at) in res.ports():
                        out.append(FirewallViolation(f"{t.name}/{src.port.name}",
                                                     f"{t.name}/{dst.port.name}",
                                                     describe_class(c),
                                                     tuple(s for s in res.steps if s.flow)))
        return out


def _next_hop_mac(topo: Topology, src, dst) -> str | None:
    """Where ``src`` sends a packet for ``dst``: its MAC on one network, the router's
    interface on src's network across a router; None when nothing joins them."""
    if src.network.name == dst.network.name:
        return dst.port.mac
    router = topo.router_of(src.tenant, src.network.name)
    if router is None or topo.router_of(dst.tenant, dst.network.name) is not router:
        return None
    return next(i.mac for i in router.interfaces if i.network.name == src.network.name)


def _packet(src, dst, eth_dst: str, c: Class) -> dict:
    proto, dport, icmp_type, icmp_code = c
    pkt = {"eth_src": src.port.mac, "eth_dst": eth_dst, "eth_type": 0x0800,
           "ipv4_src": src.ips[0], "ipv4_dst": dst.ips[0], "ip_proto": IP_PROTOCOLS[proto],
           "nw_ttl": 64}
    if proto == "icmp":
        pkt.update(icmpv4_type=icmp_type, icmpv4_code=icmp_code)
    else:
        pkt.update({f"{proto}_src": PROBE_SPORT, f"{proto}_dst": dport})
        if proto == "tcp":
            pkt["tcp_flags"] = 0x02  # a SYN
    return pkt


def _digests(per_hv: Mapping[str, object]) -> dict[str, str]:
    """tenant -> a digest of its flows on every hypervisor (one pass over the flows)."""
    keys: dict[str, list] = {}
    for hv, d in per_hv.items():
        for f in d.flows:
            if f.origin.startswith("tenant/"):
                keys.setdefault(f.origin.split("/", 2)[1], []).append((hv, f.key))
    return {t: hashlib.blake2b(repr(sorted(k)).encode(), digest_size=16).hexdigest()
            for t, k in keys.items()}


def describe_breach(v: FirewallViolation, loaded) -> str:
    lines = [f"{v.source} can open a {v.packet} connection to {v.target}, which its security "
             f"groups do not allow", "  its path:"]
    for step in v.steps:
        loc = loaded.location(step.flow.origin) if loaded is not None else None
        lines.append(f"  {step.hv} {step.flow}" + (f"  ({loc})" if loc else ""))
    return "\n".join(lines)
