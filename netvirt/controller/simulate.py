"""Walk a packet through compiled flows, as OVS would, without a switch.

It answers "where does this packet go?" for the unit tests (tenant isolation, port security)
and is the model half of `netvirt trace`.  Every step records the table, the flow that
matched and its origin, so a verdict leads back to the YAML.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netvirt.controller.flows import Flow, Goto, GroupAction, Move, Output, SetField, WriteMetadata
from netvirt.controller.pipeline import TUNNEL_OFPORT, Table
from netvirt.reconcile.desired import DesiredFlows

MAX_HOPS = 64  # tables visited per packet, across hypervisors; a loop is a compiler bug


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

    def ports(self) -> set[tuple[str, int]]:
        return {(hv, p) for hv, p, _ in self.delivered}


def _value_matches(have, want) -> bool:
    if isinstance(want, tuple):
        value, mask = want
        if isinstance(value, str):
            return _mac_int(have) & _mac_int(mask) == _mac_int(value) & _mac_int(mask)
        return have is not None and (have & mask) == (value & mask)
    return have == want


def _mac_int(mac) -> int:
    return int(str(mac).replace(":", ""), 16) if mac is not None else -1


def matches(flow: Flow, pkt: dict) -> bool:
    return all(_value_matches(pkt.get(k), v) for k, v in flow.match)


class Network:
    """The compiled state of every hypervisor plus how tunnels join them."""

    def __init__(self, per_hv: dict[str, DesiredFlows], underlay: dict[str, str]):
        self.underlay = underlay  # hv -> underlay IP
        self.by_ip = {ip: hv for hv, ip in underlay.items()}
        self.tables: dict[str, dict[int, list[Flow]]] = {}
        self.groups = {hv: {g.group_id: g for g in d.groups} for hv, d in per_hv.items()}
        for hv, d in per_hv.items():
            t: dict[int, list[Flow]] = {}
            for f in d.flows:
                t.setdefault(int(f.table), []).append(f)
            for flows in t.values():
                flows.sort(key=lambda f: -f.priority)
            self.tables[hv] = t

    @staticmethod
    def of_config(per_hv: dict[str, DesiredFlows], cfg) -> "Network":
        """The network of ``cfg``'s hypervisors, joined by their underlay IPs."""
        return Network(per_hv, {h.name: str(h.underlay_ip.ip) for h in cfg.hypervisors})

    def lookup(self, hv: str, table: Table, pkt: dict) -> Flow | None:
        for f in self.tables[hv].get(int(table), []):
            if matches(f, pkt):
                return f
        return None

    def inject(self, hv: str, in_port: int, pkt: dict, follow_tunnels: bool = True) -> Result:
        """``follow_tunnels=False`` stops at this switch, as `ofproto/trace` does."""
        res = Result(follow_tunnels=follow_tunnels)
        self._enter(hv, {**pkt, "in_port": in_port, "metadata": 0}, res, 0)
        return res

    def _enter(self, hv: str, pkt: dict, res: Result, hops: int) -> None:
        res.entries.append((hv, {k: v for k, v in pkt.items() if k != "metadata"}))
        self._run(hv, Table.CLASSIFY, pkt, res, hops)

    def _run(self, hv: str, table: Table, pkt: dict, res: Result, hops: int) -> None:
        if hops > MAX_HOPS:
            raise AssertionError(f"packet loops: {res.steps[-5:]}")
        flow = self.lookup(hv, table, pkt)
        step = Step(hv, table, flow)
        res.steps.append(step)
        if flow is None or not flow.actions:
            res.dropped_at.append(step)
            return
        self._actions(hv, flow.actions, dict(pkt), res, hops)

    def _actions(self, hv: str, actions: tuple, pkt: dict, res: Result, hops: int) -> None:
        for a in actions:
            if isinstance(a, SetField):
                pkt[a.field] = a.value
            elif isinstance(a, Move):
                pkt[a.dst] = pkt.get(a.src)
            elif isinstance(a, WriteMetadata):
                pkt["metadata"] = (pkt.get("metadata", 0) & ~a.mask) | (a.value & a.mask)
            elif isinstance(a, Output):
                self._output(hv, a.port, dict(pkt), res, hops)
            elif isinstance(a, GroupAction):
                for bucket in self.groups[hv][a.group_id].buckets:
                    self._actions(hv, bucket, dict(pkt), res, hops)
            elif isinstance(a, Goto):
                self._run(hv, a.table, pkt, res, hops + 1)

    def _output(self, hv: str, port, pkt: dict, res: Result, hops: int) -> None:
        if port == "IN_PORT":
            port = pkt["in_port"]
        elif port == pkt["in_port"]:
            return  # OpenFlow never sends a packet back out of its ingress port implicitly
        if port != TUNNEL_OFPORT:
            res.delivered.add((hv, port, frozenset((k, v) for k, v in pkt.items()
                                                   if k not in ("metadata", "in_port"))))
            return
        remote = self.by_ip.get(str(ipaddress.ip_address(pkt["tun_ipv4_dst"])))
        if remote is None or not res.follow_tunnels:
            return  # nobody there: the underlay drops it
        inner = {k: v for k, v in pkt.items() if not k.startswith("tun_")}
        inner.update(in_port=TUNNEL_OFPORT, metadata=0, tun_ipv4_src=self.underlay[hv],
                     tun_ipv4_dst=self.underlay[remote], tunnel_id=pkt["tunnel_id"])
        self._enter(remote, inner, res, hops + 1)
