"""The stateful firewall (security groups): ACL_FROM_VM_CT/ACL_FROM_VM judge what a
firewalled port sends (its egress rules), ACL_TO_VM_CT/ACL_TO_VM what it receives (its
ingress rules), once per output port, flooded copies included.

Each firewalled port has a conntrack zone of its own, used in both directions: a connection
is judged and committed once where it leaves its sender and once where it reaches its
receiver, each in that port's zone, so the receiver's rules apply even when both ports are
on one hypervisor, and a reply finds the connection its port accepted.  (One zone per
tenant would not do: the second ct() of a connection between two ports of one hypervisor
would find it established and skip the receiver's rules.)

A new connection that a rule allows is committed with the rule's id as its ct_mark.  After
that its packets pass on "committed, and its mark is a rule the port still has", decided
without looking at the rules again (a connection nothing committed has mark 0, never live).  Removing a rule (or a port from a group) takes its
mark out of that set: the connection's next packet in its original direction is judged
again like a new one, and committed with the mark of another rule that allows it, or
dropped; its replies drop.  Adding a rule never changes a mark that is live, so it cuts
nothing.

Costs on a hypervisor, per firewalled port there: 2 flows per direction (its ct() and its
default) and 2 clause flows; per rule: 1 flow per remote address or CIDR, 1 per port-range
prefix, a commit flow and a live-mark flow, shared by all its ports (OVS conjunctions:
O(ports + members), not O(ports x members)).
"""
from __future__ import annotations

from collections import defaultdict

from netvirt.pipeline.layout import (CT_INV, CT_REL, CT_RPL, CT_TRK, ETH_IP, FW_FROM_VM,
                                     FW_LOG_BURST, FW_LOG_METER_ID, FW_LOG_RATE, FW_STAGE_MASK,
                                     FW_TO_VM, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, REG_FW,
                                     REG_OUT, REG_ZONE)
from netvirt.pipeline.records import (CT, PIPELINE_ORIGIN, Conjunction, Flow, Goto, Meter,
                                      MeterAction, Output, SetField, h32)
from netvirt.pipeline.stages import following
from netvirt.pipeline.tables import Table
from netvirt.topology.security import FirewallOnHv, FwRule

# priorities in the ACL stages
P_INVALID, P_RELATED, P_LIVE, P_ANY_RULE, P_RULE, P_DEFAULT, P_CUT = 300, 290, 250, 210, 200, 100, 90
# "tracked, in the connection's original direction, neither invalid nor related": a new
# connection, or an established one whose mark is no longer live, judged again
JUDGE = (CT_TRK, CT_TRK | CT_RPL | CT_INV | CT_REL)
# a denial goes to the drop log (netvirt.controller.packet_in) through its meter, and no
# further: the controller only logs it
DENY = (MeterAction(FW_LOG_METER_ID), Output("CONTROLLER"))
# "tracked, committed with a mark that is live": est or not (a UDP flow is +new until its
# first reply, and a fragment after the first carries no ports to judge it by again)
LIVE = (CT_TRK, CT_TRK | CT_INV | CT_REL)


class _Side:
    """One direction of the firewall: its tables, how it names the port and the remote."""

    def __init__(self, direction: str, ct_table: Table, table: Table, flag: int,
                 port_field: str, remote_field: str):
        self.direction, self.ct_table, self.table, self.flag = direction, ct_table, table, flag
        self.port_field, self.remote_field = port_field, remote_field
        self.next = following(table)


FROM_VM = _Side("egress", Table.ACL_FROM_VM_CT, Table.ACL_FROM_VM, FW_FROM_VM, "in_port",
                "ipv4_dst")
TO_VM = _Side("ingress", Table.ACL_TO_VM_CT, Table.ACL_TO_VM, FW_TO_VM, REG_OUT, "ipv4_src")


def stage_flows() -> list[Flow]:
    """Per ACL stage, for the packets a firewalled port's ct() tracked (REG_FW says so):
    invalid drops, related (ICMP errors of a tracked connection) goes on, and what no rule,
    live mark or default let through is denied (to the drop log).  Every tenant's view brings them (the compiler
    keeps one of each), so a hypervisor without firewalled ports has none."""
    flows = []
    for side in (FROM_VM, TO_VM):
        fw = {REG_FW: (side.flag, FW_STAGE_MASK)}
        flows += [
            Flow.make(side.table, P_INVALID, {**fw, "ct_state": (CT_TRK | CT_INV,) * 2}, [],
                      PIPELINE_ORIGIN),
            Flow.make(side.table, P_RELATED, {**fw, "ct_state": (CT_TRK | CT_REL, CT_TRK | CT_REL
                                                                 | CT_INV)},
                      [Goto(side.next)], PIPELINE_ORIGIN),
            Flow.make(side.table, P_CUT, {**fw, "ct_state": (CT_TRK, CT_TRK)}, DENY,
                      PIPELINE_ORIGIN),
        ]
    return flows


def compile_firewall(fw: FirewallOnHv) -> tuple[list[Flow], list, list]:
    flows = stage_flows()
    for side in (FROM_VM, TO_VM):
        flows += _side(fw, side)
    return flows, [], [Meter(FW_LOG_METER_ID, FW_LOG_RATE, FW_LOG_BURST, "pktps",
                             PIPELINE_ORIGIN)]


def _conj_id(side: _Side, kind: str, rule_id: int) -> int:
    return h32(f"{side.direction}/{kind}/{rule_id}") or 1


def _side(fw: FirewallOnHv, side: _Side) -> list[Flow]:
    flows = []
    rules = [r for r in fw.rules if r.direction == side.direction]
    allow_default = fw.allow_ingress if side.direction == "ingress" else fw.allow_egress
    default_id = fw.default_id(side.direction)

    def commit(mark: int) -> list:
        return [CT(commit=True, zone=REG_ZONE, mark=mark), Goto(side.next)]

    # clause flows by (priority, match): conjunctions of several rules and ports share them
    clauses: dict[tuple, list[Conjunction]] = defaultdict(list)
    origins: dict[tuple, str] = {}
    live_ids: set[int] = set()
    committed: set[int] = set()
    tenant = {REG_FW: fw.key << 2 | side.flag}  # scopes the clauses shared by the tenant
    for p in fw.ports:
        port = {side.port_field: p.ofport}
        flows.append(Flow.make(side.ct_table, 100, {**port, "eth_type": ETH_IP}, [
            SetField(REG_ZONE, p.zone), SetField(REG_FW, tenant[REG_FW]),
            CT(zone=REG_ZONE, table=side.table)], p.origin))
        mine = [r for r in rules if r.group in p.groups]
        # live: the port's rules of both directions (a reply carries the mark its port's
        # other-direction rule gave the connection), and the defaults that allow
        ids = {r.rule_id for r in fw.rules if r.group in p.groups}
        ids |= {fw.default_id(d) for d, allow in (("ingress", fw.allow_ingress),
                                                  ("egress", fw.allow_egress)) if allow}
        live_ids |= ids
        if ids:  # (a clause flow without conjunctions would be a drop)
            key = (P_LIVE, tuple(sorted(port.items())))
            clauses[key] += [Conjunction(_conj_id(side, "live", i), 1, 2) for i in sorted(ids)]
            origins.setdefault(key, p.origin)
        # (OVS refuses a ct() in a flow whose match does not say IPv4)
        judged = {**port, "eth_type": ETH_IP, "ct_state": JUDGE}
        any_rule = next((r for r in mine if r.protocol is None and r.remote is None), None)
        if any_rule is not None:  # allows everything new: no conjunction needed
            flows.append(Flow.make(side.table, P_ANY_RULE, judged, commit(any_rule.rule_id),
                                   any_rule.origin))
        elif mine:
            key = (P_RULE, tuple(sorted(judged.items())))
            for r in mine:
                clauses[key].append(Conjunction(_conj_id(side, "new", r.rule_id), 1,
                                                _n_clauses(r)))
                committed.add(r.rule_id)
            origins.setdefault(key, p.origin)
        flows.append(Flow.make(side.table, P_DEFAULT, judged,
                               commit(default_id) if allow_default else DENY,
                               fw.origin))
    for i in sorted(live_ids):
        key = (P_LIVE, tuple(sorted({**tenant, "ct_state": LIVE, "ct_mark": i}.items())))
        clauses[key].append(Conjunction(_conj_id(side, "live", i), 2, 2))
        origins.setdefault(key, fw.origin)
        flows.append(Flow.make(side.table, P_LIVE, {"conj_id": _conj_id(side, "live", i)},
                               [Goto(side.next)], fw.origin))
    for r in rules:
        if r.rule_id not in committed:
            continue
        conj = _conj_id(side, "new", r.rule_id)
        n = 2
        if r.remote is not None:
            for addr in r.remote:
                key = (P_RULE, tuple(sorted({**tenant, "eth_type": ETH_IP,
                                             side.remote_field: _address(addr)}.items())))
                clauses[key].append(Conjunction(conj, n, _n_clauses(r)))
                origins.setdefault(key, r.origin)
            n += 1
        if r.protocol is not None:
            for m in _l4_matches(r):
                key = (P_RULE, tuple(sorted({**tenant, **m}.items())))
                clauses[key].append(Conjunction(conj, n, _n_clauses(r)))
                origins.setdefault(key, r.origin)
        flows.append(Flow.make(side.table, P_RULE, {"conj_id": conj, "eth_type": ETH_IP},
                               commit(r.rule_id), r.origin))
    for (prio, match), conjs in clauses.items():  # (in the order made: inputs are sorted)
        flows.append(Flow(side.table, prio, match, tuple(sorted(set(conjs))),
                          (origins[prio, match],)))
    return flows


def _n_clauses(r: FwRule) -> int:
    return 1 + (r.remote is not None) + (r.protocol is not None)


def _address(addr: str):
    """An address exactly, a CIDR as (network, netmask), as the router's flows write them."""
    if "/" not in addr:
        return addr
    net, _, bits = addr.partition("/")
    if bits == "32":
        return net
    mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF
    return (net, ".".join(str((mask >> s) & 0xFF) for s in (24, 16, 8, 0)))


def _l4_matches(r: FwRule) -> list[dict]:
    base = {"eth_type": ETH_IP, "ip_proto": r.protocol}
    if r.protocol == IPPROTO_ICMP:
        m = dict(base)
        if r.icmp_type is not None:
            m["icmpv4_type"] = r.icmp_type
        if r.icmp_code is not None:
            m["icmpv4_code"] = r.icmp_code
        return [m]
    if r.protocol in (IPPROTO_TCP, IPPROTO_UDP) and r.ports is not None:
        f = "tcp_dst" if r.protocol == IPPROTO_TCP else "udp_dst"
        return [{**base, f: pm if pm[1] != 0xFFFF else pm[0]} for pm in port_prefixes(*r.ports)]
    return [base]


def port_prefixes(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] as the fewest (value, mask) pairs of 16-bit ports (OVS matches transport
    ports under a bitwise mask)."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out
