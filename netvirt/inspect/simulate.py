"""Walk a packet through compiled flows, as OVS would, without a switch.

It answers "where does this packet go?" for the unit tests (tenant isolation, port security)
and is the model half of `netvirt trace`.  Every step records the table, the flow that
matched and its origin, so a verdict leads back to the YAML.

What it models of OVS: priority order within a table; an instruction set as the codec
writes it (meter, apply-actions in order, write-metadata, goto); all and select groups
(each bucket of an all group on a copy; a select group takes its heaviest bucket, for a
repeatable answer); resubmit (the resubmitted table's changes stay with the packet);
output to the ingress port skipped unless it is output:IN_PORT; output to a register;
dec_ttl; ct with zones (a number or a register's), commit, marks, NAT and recirculation
(netvirt.inspect.conntrack, whose state lasts for the life of the Network, so a second
packet sees the first one's connection); conjunctive matches (at one priority, a flow that
matches wins; else a conjunction whose every clause has a matching flow runs its conj_id
flow, as OVS's classifier does); packets to the controller; tunnels between hypervisors.
Meters let every packet through.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from netvirt.errors import PipelineError
from netvirt.inspect.conntrack import Conntrack, five_tuple
from netvirt.pipeline.layout import TUNNEL_OFPORT, UNTAGGED
from netvirt.pipeline.records import (CT, ClearInPort, Conjunction, DecTtl, Flow, Goto,
                                      GroupAction, MeterAction, Move, Output, OutputReg, Resubmit,
                                      SetField, WriteMetadata)
from netvirt.pipeline.stages import STAGES, Miss
from netvirt.pipeline.tables import Table

_RETURNS = frozenset(t for t, s in STAGES.items() if s.miss is Miss.RETURN)
MAX_HOPS = 64  # tables visited per packet, across hypervisors; a loop is a compiler bug
_NOT_DELIVERED = ("metadata", "in_port", "ct_state", "ct_zone", "ct_mark")


@dataclass(frozen=True)
class Step:
    hv: str
    table: Table
    flow: Flow | None  # None = no flow matched (table miss: drop)


@dataclass
class Result:
    delivered: set = field(default_factory=set)  # {(hv, ofport, frozen packet items)}
    steps: list = field(default_factory=list)
    entries: list = field(default_factory=list)  # (hv, packet) as it entered each switch
    follow_tunnels: bool = True  # False: stop at the first switch, as ofproto/trace does
    dropped_at: list = field(default_factory=list)  # Steps whose flow dropped the packet
    to_controller: list = field(default_factory=list)  # (hv, packet) sent as packet-ins
    punted_at: list = field(default_factory=list)  # the Steps whose flow sent them
    tunneled: list = field(default_factory=list)  # (hv, remote underlay IP) it was sent to
    # (hv, ct_state, NAT changed the packet, index in steps of its first lookup after)
    recirculations: list = field(default_factory=list)

    def ports(self) -> set[tuple[str, int]]:
        return {(hv, p) for hv, p, _ in self.delivered}


def _value_matches(have, want) -> bool:
    if isinstance(want, tuple):
        value, mask = want
        if isinstance(value, str):
            return _int(have) & _int(mask) == _int(value) & _int(mask)
        return have is not None and (have & mask) == (value & mask)
    return have == want


@lru_cache(maxsize=1 << 16)
def _int(text) -> int:
    """A MAC or an IPv4 address as an integer (-1 for none); the same few recur in every
    masked match a packet meets."""
    if text is None:
        return -1
    text = str(text)
    if "." in text:
        return int(ipaddress.IPv4Address(text))
    return int(text.replace(":", ""), 16)


_IPV4_FIELDS = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst"}


def _moved(src: str, dst: str, value):
    """A value moved between fields: the model keeps addresses as text and registers as
    integers, as flows write them."""
    if value is None:
        return None
    if dst.startswith("reg") and src in _IPV4_FIELDS:
        return int(ipaddress.IPv4Address(value))
    if src.startswith("reg") and dst in _IPV4_FIELDS:
        return str(ipaddress.IPv4Address(value))
    return value


def matches(flow: Flow, pkt: dict) -> bool:
    return all(_value_matches(pkt.get(k), v) for k, v in flow.match)


def _ordered(actions: tuple) -> list:
    """The order OVS executes a flow's instructions in (the codec writes them so)."""
    meter = [a for a in actions if isinstance(a, MeterAction)]
    apply = [a for a in actions if not isinstance(a, (MeterAction, WriteMetadata, Goto))]
    meta = [a for a in actions if isinstance(a, WriteMetadata)]
    goto = [a for a in actions if isinstance(a, Goto)]
    return meter + apply + meta + goto


class _Index:
    """Flows found by the fields they match exactly: grouped by which fields those are, and
    each group a dict from their values to the flows, so a lookup meets the flows that may
    match, not the table (L2_LOOKUP has a flow per MAC, the firewall a clause per member)."""

    def __init__(self, flows: list[Flow]):
        self.flows = flows  # in the order compiled
        self.groups: dict[tuple, dict[tuple, list[int]]] = {}
        for i, f in enumerate(flows):
            sig = tuple(k for k, v in f.match if not isinstance(v, tuple))
            key = tuple(v for _, v in f.match if not isinstance(v, tuple))
            self.groups.setdefault(sig, {}).setdefault(key, []).append(i)

    def matching(self, pkt: dict) -> list[Flow]:
        """The flows that match ``pkt``, in the order compiled."""
        found: list[int] = []
        for sig, by in self.groups.items():
            found += by.get(tuple(pkt.get(k) for k in sig), ())
        found.sort()
        return [self.flows[i] for i in found if matches(self.flows[i], pkt)]

    def __iter__(self):
        return iter(self.flows)

    def __bool__(self) -> bool:
        return bool(self.flows)


@dataclass
class _Level:
    """A table's flows of one priority, sorted out for the conjunction rule."""

    priority: int
    plain: _Index  # in the order compiled
    clauses: _Index  # flows whose actions are conjunctions
    conj: dict = field(default_factory=dict)  # conj_id -> the flows that match on it


def _levels(flows: list[Flow]) -> list[_Level]:
    by_priority: dict[int, tuple[list, list, dict]] = {}
    for f in flows:
        plain, clauses, conj = by_priority.setdefault(f.priority, ([], [], {}))
        conj_id = next((v for k, v in f.match if k == "conj_id"), None)
        if conj_id is not None:
            conj.setdefault(conj_id, []).append(f)
        elif f.actions and isinstance(f.actions[0], Conjunction):
            clauses.append(f)
        else:
            plain.append(f)
    return [_Level(prio, _Index(plain), _Index(clauses), conj)
            for prio, (plain, clauses, conj) in sorted(by_priority.items(), key=lambda kv: -kv[0])]


class Network:
    """The compiled state of every hypervisor plus how tunnels join them.  ``per_hv`` maps a
    hypervisor to anything with ``flows`` and ``groups`` (a DesiredFlows)."""

    def __init__(self, per_hv: Mapping[str, object], underlay: dict[str, str]):
        self.underlay = underlay  # hv -> underlay IP
        self.by_ip = {ip: hv for hv, ip in underlay.items()}
        self.tables: dict[str, dict[int, list[_Level]]] = {}
        self.groups = {hv: {g.group_id: g for g in d.groups} for hv, d in per_hv.items()}
        self.conntrack = {hv: Conntrack() for hv in per_hv}
        for hv, d in per_hv.items():
            t: dict[int, list[Flow]] = {}
            for f in d.flows:
                t.setdefault(int(f.table), []).append(f)
            self.tables[hv] = {table: _levels(flows) for table, flows in t.items()}

    @staticmethod
    def of_config(per_hv: Mapping[str, object], cfg) -> "Network":
        """The network of ``cfg``'s hypervisors, joined by their underlay IPs."""
        return Network(per_hv, {h.name: str(h.underlay_ip.ip) for h in cfg.hypervisors})

    def flows(self, hv: str, table: Table) -> list[Flow]:
        """``table``'s flows on ``hv``, highest priority first."""
        return [f for lv in self.tables[hv].get(int(table), [])
                for f in [*lv.plain, *lv.clauses, *(g for fs in lv.conj.values() for g in fs)]]

    def lookup(self, hv: str, table: Table, pkt: dict) -> Flow | None:
        for lv in self.tables[hv].get(int(table), []):
            hit = lv.plain.matching(pkt)
            if hit:
                return hit[0]
            if not lv.clauses:
                continue
            met: dict[int, set] = {}
            need: dict[int, int] = {}
            for f in lv.clauses.matching(pkt):
                for c in f.actions:
                    met.setdefault(c.conj_id, set()).add(c.clause)
                    need[c.conj_id] = c.n_clauses
            for conj_id in sorted(met):
                if len(met[conj_id]) == need[conj_id]:
                    probe = {**pkt, "conj_id": conj_id}
                    for f in lv.conj.get(conj_id, ()):
                        if matches(f, probe):
                            return f
        return None

    def inject(self, hv: str, in_port: int, pkt: dict, follow_tunnels: bool = True) -> Result:
        """``follow_tunnels=False`` stops at this switch, as `ofproto/trace` does."""
        res = Result(follow_tunnels=follow_tunnels)
        # a packet without a vlan_vid is untagged, as OVS sees it
        self._enter(hv, {"vlan_vid": UNTAGGED, **pkt, "in_port": in_port, "metadata": 0},
                    res, 0)
        return res

    def run(self, hv: str, table: Table, pkt: dict) -> Result:
        """``pkt`` (with the metadata and registers a packet has there) from ``table`` on,
        on this switch only: one stage, as the isolation proof judges a firewall."""
        res = Result(follow_tunnels=False)
        self._run(hv, table, {"vlan_vid": UNTAGGED, **pkt}, res, 0)
        return res

    def _enter(self, hv: str, pkt: dict, res: Result, hops: int) -> None:
        res.entries.append((hv, {k: v for k, v in pkt.items() if k != "metadata"}))
        self._run(hv, Table.CLASSIFY, pkt, res, hops)

    def _run(self, hv: str, table: Table, pkt: dict, res: Result, hops: int) -> None:
        """Look ``pkt`` up in ``table`` and execute the flow on it, in place."""
        if hops > MAX_HOPS:
            raise PipelineError(f"packet loops: {res.steps[-5:]}")
        flow = self.lookup(hv, table, pkt)
        step = Step(hv, table, flow)
        res.steps.append(step)
        if flow is None or not flow.actions:
            if table not in _RETURNS:  # a lookup table's caller goes on: no drop
                res.dropped_at.append(step)
            return
        self._actions(hv, _ordered(flow.actions), pkt, res, hops, step)

    def _actions(self, hv: str, actions, pkt: dict, res: Result, hops: int, step: Step) -> None:
        for a in actions:
            if isinstance(a, SetField):
                pkt[a.field] = a.value
            elif isinstance(a, Move):
                pkt[a.dst] = _moved(a.src, a.dst, pkt.get(a.src))
            elif isinstance(a, WriteMetadata):
                pkt["metadata"] = (pkt.get("metadata", 0) & ~a.mask) | (a.value & a.mask)
            elif isinstance(a, ClearInPort):
                pkt["in_port"] = 0
            elif isinstance(a, DecTtl):
                ttl = pkt.get("nw_ttl", 64)
                if ttl <= 1:
                    res.dropped_at.append(step)  # OVS stops the packet: its TTL ran out
                    return
                pkt["nw_ttl"] = ttl - 1
            elif isinstance(a, Output):
                self._output(hv, a.port, dict(pkt), res, hops)
            elif isinstance(a, OutputReg):
                self._output(hv, pkt.get(a.field, 0), dict(pkt), res, hops)
            elif isinstance(a, GroupAction):
                group = self.groups[hv][a.group_id]
                if group.kind == "select":
                    heaviest = max(range(len(group.buckets)), key=lambda i: group.weights[i])
                    buckets = [group.buckets[heaviest]]
                else:
                    buckets = group.buckets
                for bucket in buckets:
                    self._actions(hv, bucket, dict(pkt), res, hops, step)
            elif isinstance(a, Resubmit):
                self._run(hv, a.table, pkt, res, hops + 1)
            elif isinstance(a, CT):
                self._ct(hv, a, pkt, res, hops)
            elif isinstance(a, Goto):
                self._run(hv, a.table, pkt, res, hops + 1)
            # MeterAction: a meter lets the packet through (the model has no rates);
            # Learn: the model learns nothing, so an affinity lookup always finds no member
            # and the select group answers, as for a client's first connection

    def _ct(self, hv: str, ct: CT, pkt: dict, res: Result, hops: int) -> None:
        if isinstance(ct.zone, str):  # the zone is a register's low 16 bits
            ct = dataclasses.replace(ct, zone=pkt.get(ct.zone, 0) & 0xFFFF)
        before = five_tuple(pkt)
        state, mark = self.conntrack[hv].execute(ct, pkt)
        if ct.table is not None:
            # the recirculated copy carries the connection's state; the original goes on
            # with the rest of this flow's actions (usually none)
            res.recirculations.append((hv, state, five_tuple(pkt) != before, len(res.steps)))
            copy = {**pkt, "ct_state": state, "ct_zone": ct.zone, "ct_mark": mark}
            self._run(hv, ct.table, copy, res, hops + 1)

    def fresh(self) -> "Network":
        """The same switches with empty conntrack tables (a packet replayed as new)."""
        other = object.__new__(Network)
        other.__dict__.update(self.__dict__)
        other.conntrack = {hv: Conntrack() for hv in self.conntrack}
        return other

    def _output(self, hv: str, port, pkt: dict, res: Result, hops: int) -> None:
        if port == "CONTROLLER":
            res.to_controller.append((hv, pkt))
            res.punted_at.append(res.steps[-1])
            return
        if port == "IN_PORT":
            port = pkt["in_port"]
        elif port == pkt["in_port"] or not port:
            return  # OpenFlow never sends a packet back out of its ingress port implicitly
        if port != TUNNEL_OFPORT:
            res.delivered.add((hv, port, frozenset((k, v) for k, v in pkt.items()
                                                   if k not in _NOT_DELIVERED
                                                   and not k.startswith("reg"))))
            return
        dst = str(ipaddress.ip_address(pkt["tun_ipv4_dst"]))
        res.tunneled.append((hv, dst))
        remote = self.by_ip.get(dst)
        if remote is None or not res.follow_tunnels:
            return  # nobody there: the underlay drops it
        inner = {k: v for k, v in pkt.items()
                 if not k.startswith(("tun_", "reg", "ct_")) and k != "metadata"}
        inner.update(in_port=TUNNEL_OFPORT, metadata=0, tun_ipv4_src=self.underlay[hv],
                     tun_ipv4_dst=self.underlay[remote], tunnel_id=pkt["tunnel_id"])
        self._enter(remote, inner, res, hops + 1)
