"""The isolation walk: from the compiled tables of every hypervisor, which ports can a
port's packets reach, compared with what the intent allows (its own tenant: its network,
the networks of its network's router, and that router's external network).

It walks an abstraction of every packet a port can send, not sample packets: a state keeps
what decides a packet's tenant (the hypervisor, the table, metadata, the output and router
registers, the tunnel key, source and destination, the ingress port, the destination MAC,
the EtherType) and takes every other header field as "any value".  A flow that could match
some packet of the state is followed, whatever its priority, with the state narrowed to what
it matched; one that matches every packet of the state ends the table.  That
over-approximates what the switches do, so "unreachable" is proven; a reach it reports names
the flows of its path with their YAML origins.  It proves tenants, networks and routers
apart; what security groups allow inside a tenant is held to the rules by the tests
(config.firewall.permits).  docs/architecture.md, "The isolation proof", says why each part
is as it is and what it costs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netvirt.pipeline.layout import REG_OUT, REG_ROUTER, TUNNEL_OFPORT
from netvirt.pipeline.records import (CT, ClearInPort, Conjunction, Flow, Goto, GroupAction, Move, Output, OutputReg,
                                      Resubmit, SetField, WriteMetadata,
                                      fmt_value, jump_targets)
from netvirt.pipeline.tables import Table

TRACKED = ("metadata", REG_OUT, REG_ROUTER, "tunnel_id", "tun_ipv4_src", "tun_ipv4_dst",
           "in_port", "eth_dst", "eth_type")


class _Table:
    """One table's flows, found by the tracked fields they match exactly: flows are grouped
    by which fields (and masks) they match, and each group is indexed, when first asked, by
    the part of those fields a state knows.  A state then meets only the flows it may
    match, not the table (L2_LOOKUP holds a flow per MAC)."""

    def __init__(self, flows: list[Flow]):
        # a conjunction's clauses are left out: alone they take no packet (OpenFlow goes on
        # to lower priorities when not every clause matches), and the flow of the
        # conjunction's id stands for them all
        self.flows = sorted((f for f in flows if not _clause_only(f)), key=lambda f: -f.priority)
        self.groups: dict[tuple, list[int]] = {}  # ((field, mask), ...) -> positions
        for i, f in enumerate(self.flows):
            self.groups.setdefault(_signature(f), []).append(i)
        self.index: dict[tuple, dict] = {}

    def candidates(self, fields: dict) -> list[Flow]:
        found: list[int] = []
        for sig, positions in self.groups.items():
            known = tuple((name, mask) for name, mask in sig if fields.get(name) is not None)
            if not known:
                found.extend(positions)
                continue
            by = self.index.get((sig, known))
            if by is None:
                by = self.index[sig, known] = {}
                for i in positions:
                    m = dict(self.flows[i].match)
                    key = tuple(_exact(m[name], mask) for name, mask in known)
                    by.setdefault(key, []).append(i)
            want = tuple(fields[name] if mask is None else fields[name] & mask
                         for name, mask in known)
            found.extend(by.get(want, ()))
        found.sort()
        return [self.flows[i] for i in found]


def _signature(flow: Flow) -> tuple:
    """The tracked fields ``flow`` matches exactly (or an integer under a mask)."""
    sig = []
    for name, want in flow.match:
        if name not in TRACKED:
            continue
        if not isinstance(want, tuple):
            sig.append((name, None))
        elif isinstance(want[0], int):
            sig.append((name, want[1]))
    return tuple(sig)


def _exact(want, mask):
    return want if mask is None else want[0] & mask


class _Walk:
    """The walk over every hypervisor's tables, kept between proofs: ``update`` takes new
    tables and forgets only the answers they may change (those of a state that a changed
    flow may match, and of every state whose answer used one), so that an apply that
    changes one port re-walks that port's network, not the deployment."""

    def __init__(self, underlay: dict[str, str]):
        self.by_ip = {ip: hv for hv, ip in underlay.items()}
        self.underlay = underlay
        self.flows: dict[str, frozenset] = {}
        self.groups: dict[str, dict[int, object]] = {}
        self.tables: dict[str, dict[int, _Table]] = {}
        self.uses: dict[str, dict[int, tuple]] = {}  # table -> (fields used, edges)
        self.live: dict[str, dict[int, tuple[bool, ...]]] = {}
        self.memo: dict[tuple, dict] = {}  # only whole answers
        self.at: dict[tuple, set] = {}  # (hv, table) -> the keys of its answers
        self.callers: dict[tuple, set] = {}  # key -> the keys whose answers used it
        self.active: dict[tuple, int] = {}  # the states being walked -> their depth
        self.stack: list[tuple] = []
        self.walked = 0  # states walked (not answered from memory), for the tests
        self.low = 0  # the shallowest of those a loop went back to

    def update(self, per_hv: Mapping[str, object]) -> None:
        for hv in set(self.flows) - set(per_hv):
            self._forget(k for (h, _), keys in self.at.items() if h == hv for k in keys)
            for d in (self.flows, self.groups, self.tables, self.uses, self.live):
                d.pop(hv)
        for hv, d in per_hv.items():
            flows, groups = frozenset(d.flows), {g.group_id: g for g in d.groups}
            old_flows, old_groups = self.flows.get(hv, frozenset()), self.groups.get(hv, {})
            if flows == old_flows and groups == old_groups:
                continue
            changed = set(flows ^ old_flows)
            regrouped = {i for i in groups.keys() | old_groups.keys()
                         if groups.get(i) != old_groups.get(i)}
            if regrouped:
                changed.update(f for f in flows | old_flows for a in f.actions
                               if isinstance(a, GroupAction) and a.group_id in regrouped)
            retable = {int(f.table) for f in changed}
            t: dict[int, list[Flow]] = {}
            for f in flows:
                if int(f.table) in retable:
                    t.setdefault(int(f.table), []).append(f)
            tables, uses = dict(self.tables.get(hv, {})), dict(self.uses.get(hv, {}))
            for n in retable:
                if n in t:
                    tables[n], uses[n] = _Table(t[n]), _table_uses(t[n], groups)
                else:
                    tables.pop(n, None)
                    uses.pop(n, None)
            live = _liveness(uses)
            self.flows[hv], self.groups[hv], self.tables[hv], self.uses[hv] = \
                flows, groups, tables, uses
            stale = set()
            for n in live.keys() | self.live.get(hv, {}).keys():
                if live.get(n) != self.live.get(hv, {}).get(n):  # its keys mean other states
                    stale.update(self.at.get((hv, n), ()))
            self.live[hv] = live
            by_table: dict[int, list[Flow]] = {}
            for f in changed:
                if not _clause_only(f):
                    by_table.setdefault(int(f.table), []).append(f)
            for n, fs in by_table.items():
                index = _Table(fs)
                for key in self.at.get((hv, n), ()):
                    fields = dict(zip(TRACKED, key[2], strict=True))
                    if any(_may_match(f, fields) for f in index.candidates(fields)):
                        stale.add(key)
            self._forget(stale)

    def _forget(self, keys) -> None:
        todo = list(keys)
        while todo:
            key = todo.pop()
            if self.memo.pop(key, None) is not None:
                self.at[key[0], key[1]].discard(key)
            todo.extend(self.callers.pop(key, ()))

    def reach(self, hv: str, table: int, state: tuple) -> tuple[tuple, dict]:
        """The walk's key for a packet in ``state`` at ``table`` of ``hv``, and what it
        reaches: (hv, ofport) -> (hv, flow, key it went on in, or None for an output).
        Links, not whole paths, so that merging a reach costs set operations (most of a
        proof's time at 1000 ports was copying paths); ``path`` follows them."""
        live = self.live[hv].get(table)
        if live is None:
            return (hv, table, state), {}  # no such table: the packet drops
        state = tuple(v if keep else None for v, keep in zip(state, live, strict=True))
        key = (hv, table, state)
        if self.stack:
            self.callers.setdefault(key, set()).add(self.stack[-1])
        if key in self.memo:
            return key, self.memo[key]
        if key in self.active:  # a loop: what lies beyond is being found by that call
            self.low = min(self.low, self.active[key])
            return key, {}
        depth = self.active[key] = len(self.active)
        self.stack.append(key)
        self.walked += 1
        outer_low, self.low = self.low, depth
        out: dict = {}
        fields = dict(zip(TRACKED, state, strict=True))
        for f in self.tables[hv][table].candidates(fields):
            if not _may_match(f, fields):
                continue
            matched = dict(fields)
            for name, want in f.match:  # the packets this flow takes have these values
                if name in fields and name != "in_port" and not isinstance(want, tuple):
                    matched[name] = want  # (not the port: _admitted says why)
            for then, where in self._run(hv, f.actions, matched):
                new = where - out.keys()
                if new:
                    out.update(dict.fromkeys(new, (hv, f, then)))
            if _covers(f, fields):
                break  # it takes every packet of this state: nothing reaches lower flows
        del self.active[key]
        self.stack.pop()
        if self.low >= depth:  # no loop into a caller: the answer is whole, keep it
            self.memo[key] = out
            self.at.setdefault((hv, table), set()).add(key)
        self.low = min(outer_low, self.low)
        return key, out

    def path(self, key: tuple, where: tuple) -> tuple[tuple[str, Flow], ...]:
        """The flows that take a packet from the walk's ``key`` to ``where``."""
        out = []
        while key is not None:
            links = self.memo.get(key)
            if links is None:  # answered inside a loop, so not kept: walk it again
                key, links = self.reach(*key)
            hv, flow, key = links[where]
            out.append((hv, flow))
        return tuple(out)

    def _run(self, hv: str, actions, fields: dict) -> list[tuple[tuple | None, object]]:
        """What ``actions`` reach from ``fields``: (the key they went on in, or None for
        an output here; the set of (hv, ofport))."""
        out: list = []
        goto = None
        for a in actions:
            if isinstance(a, SetField):
                if a.field in fields:
                    fields[a.field] = a.value
            elif isinstance(a, Move):
                if a.dst in fields:
                    fields[a.dst] = fields.get(a.src)  # an untracked source: any value
            elif isinstance(a, WriteMetadata):
                old = fields["metadata"] if isinstance(fields["metadata"], int) else 0
                fields["metadata"] = (old & ~a.mask) | (a.value & a.mask)
                fields["in_port"] = _admitted(fields["in_port"])
            elif isinstance(a, ClearInPort):
                fields["in_port"] = None
            elif isinstance(a, Goto):
                goto = a.table
            elif isinstance(a, Resubmit) or (isinstance(a, CT) and a.table is not None):
                out.append(self._then(hv, int(a.table), fields))
            elif isinstance(a, GroupAction):
                for bucket in self.groups[hv][a.group_id].buckets:
                    out.extend(self._run(hv, bucket, dict(fields)))
            elif isinstance(a, OutputReg):
                port = fields.get(a.field)
                if isinstance(port, int):
                    out.append((None, {(hv, port)}))
            elif isinstance(a, Output):
                out.extend(self._output(hv, a.port, fields))
        if goto is not None:
            out.append(self._then(hv, int(goto), fields))
        return out

    def _then(self, hv: str, table: int, fields: dict) -> tuple[tuple, object]:
        key, links = self.reach(hv, table, _state(fields))
        return key, links.keys()

    def _output(self, hv: str, port, fields: dict) -> list:
        if port in ("IN_PORT", "CONTROLLER"):
            return []  # back to the sender (an ARP answer), or the controller
        if port != TUNNEL_OFPORT:
            return [(None, {(hv, port)})]
        if fields.get("in_port") == TUNNEL_OFPORT:
            return []  # never back into the tunnel it came from
        dst = fields.get("tun_ipv4_dst")
        remote = self.by_ip.get(dst) if isinstance(dst, str) else None
        if remote is None:
            return []
        state = _state({"metadata": 0, "tunnel_id": fields.get("tunnel_id"),
                        "tun_ipv4_src": self.underlay[hv], "in_port": TUNNEL_OFPORT,
                        "eth_dst": fields.get("eth_dst"), "eth_type": fields.get("eth_type")})
        key, links = self.reach(remote, int(Table.CLASSIFY), state)
        return [(key, links.keys())]


def _clause_only(flow: Flow) -> bool:
    """A conjunction's clause: it only marks the packet for the flow that matches the
    conjunction's id (which the walk takes as any value), so it changes no reach."""
    return bool(flow.actions) and all(isinstance(a, Conjunction) for a in flow.actions)


def _table_uses(flows: list[Flow], groups: dict) -> tuple[set, list]:
    """The tracked fields a table's flows match or read before they write them, and the
    tables they go on in with the fields written by then: ``_liveness``'s input."""
    used: set[str] = set()
    edges: list[tuple[int, frozenset]] = []
    for f in flows:
        used.update(name for name, _ in f.match if name in TRACKED)
        _flow_uses(f.actions, set(), groups, used, edges)
    return used, edges


def _liveness(uses: dict[int, tuple]) -> dict[int, tuple[bool, ...]]:
    """Per table, the tracked fields whose value at its entry a flow may still use: match,
    read (a move, an output register; an output to the tunnel reads the tunnel key, its
    destination, the headers it carries and whether the packet came from the tunnel), or
    carry to a table after it without setting them first.  The walk forgets the others at
    the table's entry ("any value"), which is exact: nothing after looks at them.  Without
    it a routed packet's destination MAC and its router register would walk every later
    stage once per value."""
    live = {n: set(used) for n, (used, _) in uses.items()}
    changed = True
    while changed:
        changed = False
        for n, (_, edges) in uses.items():
            before = len(live[n])
            for m, written in edges:
                live[n] |= live.get(m, set()) - written
            changed |= len(live[n]) != before
    return {n: tuple(name in used for name in TRACKED) for n, used in live.items()}


def _flow_uses(actions, written: set, groups: dict, reads: set, edges: list) -> None:
    """What ``actions`` read of the fields they have not written yet, and the tables they
    continue in with the fields written by then (a goto: by the end of the flow)."""
    written = set(written)
    for a in actions:
        if isinstance(a, SetField):
            written.add(a.field)
        elif isinstance(a, ClearInPort):
            written.add("in_port")
        elif isinstance(a, Move):
            reads.update({a.src} - written)
            written.add(a.dst)
        elif isinstance(a, OutputReg):
            reads.update({a.field} - written)
        elif isinstance(a, Output) and a.port == TUNNEL_OFPORT:
            reads.update({"tunnel_id", "tun_ipv4_dst", "eth_dst", "eth_type", "in_port"} - written)
        elif isinstance(a, GroupAction):
            for bucket in groups[a.group_id].buckets:
                _flow_uses(bucket, written, groups, reads, edges)
        elif not isinstance(a, Goto):
            edges.extend((int(t), frozenset(written)) for t in jump_targets([a]))
    edges.extend((int(a.table), frozenset(written)) for a in actions if isinstance(a, Goto))


def _admitted(in_port):
    """Once a packet is admitted, which local port sent it decides no tenant (the walk
    forgets it, and so walks a network once, not once per port); whether it came from the
    tunnel still does: OpenFlow drops an output to the ingress port, and that is the
    overlay's split horizon."""
    return TUNNEL_OFPORT if in_port == TUNNEL_OFPORT else None


def _state(fields: dict) -> tuple:
    return tuple(fields.get(k) for k in TRACKED)


def _may_match(flow: Flow, fields: dict) -> bool:
    """Whether some packet in this state matches ``flow``: a tracked field must agree, an
    untracked one (any header field) may take any value."""
    for name, want in flow.match:
        if name not in fields or fields[name] is None:
            continue  # any value
        have = fields[name]
        if isinstance(want, tuple):
            value, mask = want
            if isinstance(value, int) and isinstance(have, int) and (have & mask) != (value & mask):
                return False
        elif have != want:
            return False
    return True


def _covers(flow: Flow, fields: dict) -> bool:
    """Whether ``flow`` matches every packet of the state: it matches only tracked fields,
    and those the state has."""
    return all(fields.get(name) is not None for name, _ in flow.match)


@dataclass(frozen=True)
class Violation:
    source: str  # tenant/port
    target: str  # tenant/port, or "external network NAME"
    path: tuple[tuple[str, Flow], ...]


class Prover:
    """Proves revision after revision, keeping the walk: the second proof re-walks what
    changed."""

    def __init__(self):
        self._walk: _Walk | None = None

    @property
    def walked(self) -> int:
        """States walked so far, by every proof (the tests hold a second proof to less)."""
        return self._walk.walked if self._walk else 0

    def prove(self, topo, per_hv: Mapping[str, object],
              inventories: Mapping[str, object]) -> list[Violation]:
        """Every reach the compiled tables allow that the intent does not.  An empty list
        is the proof."""
        underlay = {name: str(h.underlay_ip.ip) for name, h in topo.hypervisors.items()}
        if self._walk is None or self._walk.underlay != underlay:
            self._walk = _Walk(underlay)
        walk = self._walk
        walk.update(per_hv)
        at: dict[tuple[str, int], object] = {}
        for hv in topo.hypervisors:
            for ref in topo.ports_on(hv):
                ofport = inventories[hv].ofports.get(ref.port.interface)
                if ofport:
                    at[hv, ofport] = ref
            for e in topo.externals_on(hv):
                ofport = inventories[hv].ofports.get(e.interface)
                if ofport:
                    at[hv, ofport] = e

        def domain(ref) -> tuple:  # what a port may reach: its network, or its router's
            router = topo.router_of(ref.tenant, ref.network.name)
            return (ref.tenant, "network", ref.network.name) if router is None \
                else (ref.tenant, "router", router.router.name)
        allowed: dict[tuple, set] = {}
        for where, dst in at.items():
            if hasattr(dst, "tenant"):
                allowed.setdefault(domain(dst), set()).add(where)
        for router in topo.routers():
            if router.external is not None:
                mine = allowed.setdefault((router.tenant, "router", router.router.name), set())
                mine.update(w for w, e in at.items() if e is router.external)
        out = []
        for (hv, ofport), src in sorted(at.items(), key=lambda kv: kv[0]):
            if not hasattr(src, "tenant"):
                continue  # an external network's port: what comes in is the routers' to judge
            key, links = walk.reach(hv, int(Table.CLASSIFY), _state({"in_port": ofport}))
            wrong = (links.keys() & at.keys()) - allowed[domain(src)]
            for where in sorted(wrong):
                dst = at[where]
                target = f"{dst.tenant}/{dst.port.name}" if hasattr(dst, "tenant") \
                    else f"external network {dst.name}"
                out.append(Violation(f"{src.tenant}/{src.port.name}", target,
                                     walk.path(key, where)))
        return out


def prove(topo, per_hv: Mapping[str, object], inventories: Mapping[str, object]) -> list[Violation]:
    """One proof, from nothing."""
    return Prover().prove(topo, per_hv, inventories)


def describe(v: Violation, loaded) -> str:
    lines = [f"{v.source} can reach {v.target}, which the intent does not allow",
             f"  a packet that does: {_packet(v.path)}", "  its path:"]
    for hv, f in v.path:
        loc = loaded.location(f.origin) if loaded is not None else None
        lines.append(f"  {hv} {f}" + (f"  ({loc})" if loc else ""))
    return "\n".join(lines)


_INTERNAL = ("metadata", "reg", "tun", "in_port", "ct_", "conj_id", "vlan_vid")


def _packet(path) -> str:
    """The header fields the path's flows on the sender's hypervisor match, as the sender
    sent them (before a flow rewrote them); the others may take any value."""
    seen: dict[str, object] = {}
    rewritten: set[str] = set()
    for hv, f in path:
        if hv != path[0][0]:
            break
        for name, want in f.match:
            if not name.startswith(_INTERNAL) and name not in rewritten:
                seen.setdefault(name, want)
        rewritten.update(a.field for a in f.actions if isinstance(a, SetField))
        rewritten.update(a.dst for a in f.actions if isinstance(a, Move))
    return ",".join(f"{k}={fmt_value(k, w)}" for k, w in seen.items()) or "any"
