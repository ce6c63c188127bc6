"""The isolation proof inside a tenant: whether a compiled firewall lets through more new
connections than its port's security groups allow.

The walk (netvirt.inspect.isolation) proves tenants, networks and routers apart, taking every
header field it does not track as any value, so it cannot tell what a firewall passes.  Here
each side of each firewalled port is judged on its own, as the pipeline judges it: its egress
in ACL_FROM_VM_CT/ACL_FROM_VM on its hypervisor, its ingress in ACL_TO_VM_CT/ACL_TO_VM (the
rest of a path is the walk's).  The simulator (netvirt.inspect.simulate: conntrack,
conjunctions) runs those stages alone on the first packet of a new connection of each
*class*, to or from each other port the port may reach (its network, or its router's), and
the verdict is compared with the port's rules read from the config (config.firewall.Intent).

A class is a protocol and a destination port (or ICMP type and code): the ends of every
rule's port range, and of every port or block of ports a compiled firewall flow matches, the
ports just outside them and one port nothing names, per protocol, so that every range is
crossed at both edges; what lies between two edges is decided alike by the rules and by the
flows.  The remote address is sent once per *atom*: addresses that every firewall flow
matching on it treats alike (the same flows but for the address itself: one member of a
remote group is as good as another) give the same verdict, so a port is judged against
atoms x classes, not ports x classes, and the rules' answer for every actual remote port is
compared with its atom's.  Remote addresses are the ports' first ones (port security drops
any other, allowed address pairs aside).

The classes and atoms come from the flows that may take the tenant's packets, whoever made
them (a stray flow is what the proof is for).  A tenant is judged again only when its rules,
its ports or those flows changed: an apply that changes one tenant re-proves that tenant.
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from netvirt.config.firewall import Intent, port_range
from netvirt.inspect.simulate import Network, Step
from netvirt.pipeline.layout import (ICMP_ECHO_REQUEST, IP_PROTOCOLS, REG_FW, REG_OUT,
                                     TUNNEL_OFPORT)
from netvirt.pipeline.records import Flow, SetField
from netvirt.pipeline.tables import Table
from netvirt.topology import Topology

PROBE_SPORT = 40000  # the source port of every probe: no rule matches source ports
# (its conntrack stage, its judging stage, the rules' direction, the remote address's field)
SIDES = ((Table.ACL_FROM_VM_CT, Table.ACL_FROM_VM, "egress", "ipv4_dst"),
         (Table.ACL_TO_VM_CT, Table.ACL_TO_VM, "ingress", "ipv4_src"))
FIREWALL_TABLES = frozenset(t for side in SIDES for t in side[:2])


@dataclass(frozen=True)
class FirewallViolation:
    port: str  # tenant/port whose firewall lets it through
    side: str  # "egress" (the port's connection out) or "ingress" (in to it)
    remote: str  # tenant/port at the other end
    packet: str  # the class: "tcp 22", "icmp type 8 code 0"
    steps: tuple[Step, ...]  # the firewall stages' flows that let it through, with origins


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
                ports[proto] |= _edges(lo, lo | (~mask & 0xFFFF))
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
                    ports[proto] |= _edges(*port_range(r))
    out: list[Class] = []
    for proto, named in ports.items():
        spare = next(p for p in (7, 9, 13, 19, 37, 2049, 65000) if p not in named)
        out += [(proto, p, None, None) for p in sorted(named | {spare})]
    return out + [("icmp", None, t, c) for t, c in sorted(icmp)]


def _edges(lo: int, hi: int) -> set[int]:
    """A port range's ends and the ports just outside it."""
    return {p for p in (lo - 1, lo, hi, hi + 1) if 1 <= p <= 65535}


def describe_class(c: Class) -> str:
    proto, dport, icmp_type, icmp_code = c
    return f"icmp type {icmp_type} code {icmp_code}" if proto == "icmp" else f"{proto} {dport}"


class GroupsProver:
    """Keeps each tenant's answer until its flows change."""

    def __init__(self):
        self._done: dict[str, tuple[str, list[FirewallViolation]]] = {}
        self.sent = 0  # packets run through firewall stages so far, for the tests and the cost

    def prove(self, topo: Topology, per_hv: Mapping[str, object],
              inventories: Mapping[str, object]) -> list[FirewallViolation]:
        firewalled = [t for t in topo.config.tenants
                      if any(p.security_groups is not None for p in t.ports)]
        for name in set(self._done) - {t.name for t in firewalled}:
            del self._done[name]  # gone, or nothing firewalled: the walk's proof is whole
        if not firewalled:
            return []
        acl = {hv: [f for f in d.flows if f.table in FIREWALL_TABLES]
               for hv, d in per_hv.items()}
        stages = None
        out = []
        for t in firewalled:
            placed = [(topo.port(t.name, p.name), ofport) for p in t.ports
                      if (ofport := inventories[p.hypervisor].ofports.get(p.interface))]
            flows = _theirs(t.name, placed, acl)
            # what its verdicts depend on: its rules and ports, and the flows of the firewall
            # stages that may take its packets (whoever made them)
            what = (t.model_dump_json(), [(r.port.hypervisor, o) for r, o in placed],
                    sorted(f.key for f in flows))
            digest = hashlib.blake2b(repr(what).encode(), digest_size=16).hexdigest()
            done = self._done.get(t.name)
            if done is None or done[0] != digest:
                if stages is None:  # the firewall stages alone, where a packet stops after
                    stages = Network.of_config({hv: _Stages(fs) for hv, fs in acl.items()},
                                               topo.config)
                done = self._done[t.name] = (digest, self._tenant(topo, t, stages, placed, flows))
            out += done[1]
        return out

    def _tenant(self, topo: Topology, t, stages: Network, placed: list,
                flows: list[Flow]) -> list[FirewallViolation]:
        kinds = classes(t, flows)
        intent = Intent(t)
        out = []
        for side in SIDES:
            ct_table, table, direction, field = side
            atom = _atoms([f for f in flows if f.table in (ct_table, table)], field)
            for port, ofport in placed:
                if port.port.security_groups is None:
                    continue
                judged: dict[tuple, tuple] = {}
                for remote, _ in placed:
                    if remote is port or not topo.should_reach(port, remote):
                        continue
                    rip = remote.ips[0]
                    for c in kinds:
                        if intent.side(port.port, direction, remote.port.ips[0], c):
                            continue  # less than allowed is a fault, not a breach
                        key = (atom(rip), c)
                        if key not in judged:
                            judged[key] = self._judge(stages, side, port, ofport, rip, c)
                        steps = judged[key]
                        if steps is not None:
                            out.append(FirewallViolation(
                                f"{t.name}/{port.port.name}", direction,
                                f"{t.name}/{remote.port.name}", describe_class(c), steps))
        return out

    def _judge(self, stages: Network, side, port, ofport: int, remote_ip: str, c: Class):
        """The flows that let the class through ``port``'s firewall on ``side``, or None."""
        ct_table, table, direction, _ = side
        src, dst = (port.ips[0], remote_ip) if direction == "egress" else (remote_ip, port.ips[0])
        # in_port: the port's own for what it sends; for what it receives, one no flow of
        # the stages looks at (they judge by the output register)
        pkt = {**_packet(src, dst, c), "metadata": port.network.vni,
               "in_port": ofport if direction == "egress" else TUNNEL_OFPORT}
        if direction == "ingress":
            pkt[REG_OUT] = ofport
        res = stages.run(port.port.hypervisor, ct_table, pkt)
        self.sent += 1
        if not any(s.table > table for s in res.steps):
            return None  # stopped in the firewall
        return tuple(s for s in res.steps if s.flow and s.table <= table)


class _Stages:
    """A hypervisor's firewall stages alone: a packet that passes them meets no table."""

    def __init__(self, flows: list[Flow]):
        self.flows, self.groups = flows, []  # (no firewall flow uses a group)


def _theirs(tenant: str, placed: list, acl: dict[str, list[Flow]]) -> list[Flow]:
    """The firewall stages' flows that may take a packet of ``tenant``'s ports, whatever
    their origin (a stray flow is what the proof is for): those bound to none of another's
    ports (in_port, the output register) nor to another tenant's key (REG_FW, which the
    tenant's own conntrack-stage flows load)."""
    prefix = f"tenant/{tenant}/"
    ports = {(r.port.hypervisor, o) for r, o in placed}
    keys = {a.value for fs in acl.values() for f in fs if f.origin.startswith(prefix)
            for a in f.actions if isinstance(a, SetField) and a.field == REG_FW}
    out = []
    for hv, fs in acl.items():
        for f in fs:
            m = dict(f.match)
            if any(k in m and (hv, m[k]) not in ports for k in ("in_port", REG_OUT)):
                continue
            want = m.get(REG_FW)
            if want is not None:
                value, mask = want if isinstance(want, tuple) else (want, 0xFFFFFFFF)
                if not any(k & mask == value & mask for k in keys):
                    continue
            out.append(f)
    return out


def _atoms(flows: list[Flow], field: str):
    """A function from an address to its atom: the flows that match ``field`` and this
    address, each without the address (so that every member of one remote group, matched by
    one clause flow each, is one atom)."""
    remote = [(f, v) for f in flows for k, v in f.match if k == field]
    nets = [(f, _network(v)) for f, v in remote]
    cache: dict[str, frozenset] = {}

    def atom(ip: str) -> frozenset:
        if ip not in cache:
            addr = ipaddress.IPv4Address(ip)
            cache[ip] = frozenset(
                (f.table, f.priority, tuple(m for m in f.match if m[0] != field), f.actions)
                for f, net in nets if addr in net)
        return cache[ip]
    return atom


def _network(v) -> ipaddress.IPv4Network:
    if isinstance(v, tuple):
        return ipaddress.IPv4Network(f"{v[0]}/{v[1]}", strict=False)
    return ipaddress.IPv4Network(f"{v}/32")


def _packet(src: str, dst: str, c: Class) -> dict:
    proto, dport, icmp_type, icmp_code = c
    pkt = {"eth_type": 0x0800, "ipv4_src": src, "ipv4_dst": dst,
           "ip_proto": IP_PROTOCOLS[proto], "nw_ttl": 64}
    if proto == "icmp":
        pkt.update(icmpv4_type=icmp_type, icmpv4_code=icmp_code)
    else:
        pkt.update({f"{proto}_src": PROBE_SPORT, f"{proto}_dst": dport})
        if proto == "tcp":
            pkt["tcp_flags"] = 0x02  # a SYN
    return pkt


def describe_breach(v: FirewallViolation, loaded) -> str:
    how = (f"lets a {v.packet} connection out to {v.remote}, which its egress rules"
           if v.side == "egress" else
           f"lets a {v.packet} connection in from {v.remote}, which its ingress rules")
    lines = [f"{v.port}'s firewall {how} (and its tenant's default) do not allow",
             "  the flows that let it through:"]
    for step in v.steps:
        loc = loaded.location(step.flow.origin) if loaded is not None else None
        lines.append(f"  {step.hv} {step.flow}" + (f"  ({loc})" if loc else ""))
    return "\n".join(lines)
