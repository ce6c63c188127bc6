"""Declared stages: the one registry of what each table is for.

A stage declares its table, its direction (ingress, where a packet enters br-int; egress,
once per output port, as OVN's ls_in_*/ls_out_*), the fields its flows may match, the stages
it may continue in, and what a packet no flow matches gets (its miss).  The miss flows come
from these declarations, and every compiled flow is checked against its stage, as faucet's
ValveTable checks flow mods: a flow that matches a field its stage does not allow, or
continues in a stage it may not, is refused at compile time, not installed.

A branch stage is reached only by a goto or resubmit of a named stage, never by a miss, so
following() passes it by; a learned stage's flows (above its miss) are the switch's own, made
by a learn action, and the reconcile leaves them alone (a restart deletes none of them).

A feature that needs a new table adds its Stage here, between the ones it sits between.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from netvirt.errors import PipelineError
from netvirt.pipeline.layout import REG_AFFINE, REG_FW, REG_NEXTHOP, REG_OUT, REG_ROUTER
from netvirt.pipeline.records import (CT, PIPELINE_ORIGIN, Flow, Goto, Group, GroupAction, Learn,
                                      OutputReg, Resubmit, jump_targets)
from netvirt.pipeline.tables import Table


class Direction(Enum):
    INGRESS = "in"
    EGRESS = "out"
    BRANCH = "branch"  # entered from a named stage only; no miss continues into it


class Miss(Enum):
    DROP = "drop"
    CONTINUE = "continue"  # on to the next stage of the same direction
    OUTPUT = "output"  # out of the port in the output register
    RETURN = "return"  # nothing: the table is resubmitted to, and its caller goes on


@dataclass(frozen=True)
class Stage:
    table: Table
    direction: Direction
    matches: frozenset[str]  # match fields its flows may use
    next: tuple[Table, ...]  # stages its flows may continue in (goto, resubmit, ct table)
    miss: Miss
    job: str  # one line, for dumps and docs
    learned: bool = False  # its flows above the miss are learned by the switch, not ours

    def miss_flow(self) -> Flow:
        if self.miss == Miss.CONTINUE:
            actions = (Goto(following(self.table)),)
        else:
            actions = (OutputReg(REG_OUT),) if self.miss == Miss.OUTPUT else ()
        return Flow.make(self.table, 0, {}, actions, PIPELINE_ORIGIN)


def _stage(table, direction, matches, next_, miss, job, learned=False) -> Stage:
    return Stage(table, direction, frozenset(matches), tuple(next_), miss, job, learned)


_IN, _OUT, _BRANCH = Direction.INGRESS, Direction.EGRESS, Direction.BRANCH
# what a firewall rule's flows may match, besides the port and the remote address
_ACL_FIELDS = ("ct_state", "ct_mark", "eth_type", "ip_proto", "tcp_dst", "udp_dst",
               "icmpv4_type", "icmpv4_code")
STAGES: dict[Table, Stage] = {s.table: s for s in (
    _stage(Table.CLASSIFY, _IN, {"in_port", "tunnel_id", "tun_ipv4_src"},
           [Table.PORT_SECURITY, Table.ARP_RESPONDER, Table.L3_SNAT], Miss.CONTINUE,
           "tunnel key + source -> network (or a router's way out, on its gateway "
           "hypervisor); an external network's port -> that network; VM ports go on to "
           "PORT_SECURITY"),
    _stage(Table.PORT_SECURITY, _IN,
           {"in_port", "vlan_vid", "eth_src", "eth_type", "ipv4_src", "arp_spa", "arp_sha",
            # a DHCP client has no address yet: 0.0.0.0 -> 255.255.255.255, udp 68 -> 67
            "ipv4_dst", "ip_proto", "udp_src", "udp_dst"},
           [Table.DHCP], Miss.DROP,
           "a VM port's frames are untagged, from its own MAC/IP/ARP; admits into its network"),
    _stage(Table.DHCP, _IN, {"metadata", "eth_type", "ip_proto", "udp_dst"},
           [Table.QOS_FROM_VM], Miss.CONTINUE,
           "a DHCP request to the controller, metered; everything else goes on"),
    _stage(Table.QOS_FROM_VM, _IN, {"in_port", "eth_type"}, [Table.QOS_SHARED_FROM_VM],
           Miss.CONTINUE,
           "a port with a from_vm policy: its meter (rate), its DSCP mark on IPv4; the rest "
           "goes on"),
    _stage(Table.QOS_SHARED_FROM_VM, _IN, {"in_port"}, [Table.ACL_FROM_VM_CT], Miss.CONTINUE,
           "a port of a tenant with an aggregate policy: the tenant's meter on this "
           "hypervisor, which all its ports here share; the rest goes on"),
    _stage(Table.ACL_FROM_VM_CT, _IN, {"in_port", "eth_type"}, [Table.ACL_FROM_VM],
           Miss.CONTINUE,
           "IPv4 from a firewalled port -> conntrack in the port's own zone; the rest goes on"),
    _stage(Table.ACL_FROM_VM, _IN, {"in_port", REG_FW, "conj_id", *_ACL_FIELDS, "ipv4_dst"},
           [Table.LB_CT], Miss.CONTINUE,
           "a firewalled port's packet: invalid drops, related and live established go on, "
           "a new connection an egress rule (or the default) allows is committed; the rest "
           "drops"),
    _stage(Table.LB_CT, _IN, {"metadata", "eth_type", "ipv4_dst", "ip_proto", "tcp_dst",
                              "udp_dst", "ipv4_src", "tcp_src", "udp_src"},
           [Table.LB_PICK, Table.LB_UNHAIRPIN], Miss.CONTINUE,
           "to a VIP -> the tenant's conntrack zone (an established connection's DNAT "
           "redone); a member's reply to its own call of the VIP -> the hairpin zone; the "
           "rest goes on"),
    _stage(Table.LB_PICK, _IN, {"metadata", "ct_state", "eth_type", "ipv4_dst", "ip_proto",
                                "tcp_dst", "udp_dst"},
           [Table.LB_TO_MEMBER, Table.LB_AFFINITY, Table.LB_AFFINE], Miss.CONTINUE,
           "a new connection to a VIP -> the select group (a member by weight, DNATed and "
           "committed), or with source affinity the client's member first; a DNATed one "
           "goes on; anything else to the VIP drops"),
    _stage(Table.LB_TO_MEMBER, _IN, {"metadata", "eth_dst", "eth_type", "ipv4_dst"},
           [Table.LB_HAIRPIN], Miss.CONTINUE,
           "sent to the VIP's MAC and DNATed -> the member's MAC; the rest goes on"),
    _stage(Table.LB_HAIRPIN, _IN, {"metadata", "eth_type", "ipv4_src", "ipv4_dst", "ip_proto",
                                   "tcp_dst", "udp_dst"}, [Table.LB_UNHAIRPIN, Table.ARP_RESPONDER],
           Miss.CONTINUE,
           "a member's call of its own VIP, given to itself -> SNAT to the VIP in the hairpin "
           "zone, and back out of the port it came in by; the rest goes on"),
    _stage(Table.LB_UNHAIRPIN, _IN, {"metadata", "eth_type", "ipv4_src", "ipv4_dst",
                                     "ip_proto", "tcp_src", "udp_src"},
           [Table.LB_TO_MEMBER, Table.ARP_RESPONDER], Miss.CONTINUE,
           "the reply to that call, its SNAT undone -> the tenant's zone undoes its DNAT; "
           "the rest goes on"),
    _stage(Table.LB_AFFINITY, _BRANCH, {"metadata", "eth_type", "ip_proto", "ipv4_src",
                                        "ipv4_dst", "tcp_dst", "udp_dst"}, [], Miss.RETURN,
           "learned: a client of a VIP with source affinity -> its member's address in "
           "reg7, until the client opens no connection for the affinity timeout",
           learned=True),
    _stage(Table.LB_AFFINE, _BRANCH, {"metadata", REG_AFFINE, "eth_type", "ipv4_dst",
                                      "ip_proto", "tcp_dst", "udp_dst"},
           [Table.LB_TO_MEMBER, Table.LB_AFFINE], Miss.DROP,
           "the client's member, while it takes connections -> learned for its next, DNAT "
           "to it, committed; else the select group, whose bucket names one and comes back"),
    _stage(Table.ARP_RESPONDER, _IN, {"in_port", "metadata", "eth_type", "arp_op", "arp_tpa"},
           [Table.L2_LOOKUP], Miss.CONTINUE,
           "the hypervisor that hosts an address answers ARP for it; other opcodes than "
           "request and reply drop"),
    _stage(Table.L2_LOOKUP, _IN, {"metadata", "eth_dst", "in_port"},
           [Table.LB_REPLY, Table.FLOOD, Table.L3_INPUT, Table.L3_FROM_EXTERNAL], Miss.DROP,
           "dst MAC -> output register and egress, or the tunnel to the owner; floods, "
           "through the sending port's flood meter; a router's MAC -> its stages"),
    _stage(Table.FLOOD, _IN, {"metadata"}, [Table.LB_REPLY], Miss.DROP,
           "the network's flood group: its local ports (through egress) and its other "
           "hypervisors"),
    _stage(Table.L3_INPUT, _IN, {REG_ROUTER, "eth_type", "ip_proto", "icmpv4_type", "ipv4_dst",
                                 "nw_ttl"}, [Table.L3_ROUTE], Miss.DROP,
           "a routed packet's TTL (time exceeded: to the controller), ICMP echo to the "
           "router's addresses answered; the rest decremented and routed"),
    _stage(Table.L3_FROM_EXTERNAL, _IN, {REG_ROUTER, "eth_type", "ip_proto", "icmpv4_type",
                                         "ipv4_dst"}, [Table.L3_DNAT], Miss.DROP,
           "from the external network to a router: ICMP echo to its address answered; the "
           "rest through its conntrack zone, which undoes SNAT on replies"),
    _stage(Table.L3_DNAT, _IN, {REG_ROUTER, "eth_type", "ct_state", "ipv4_dst"},
           [Table.L3_DNAT, Table.L3_ROUTE], Miss.DROP,
           "replies and DNATed connections go on to routing; a new connection to a floating "
           "IP is DNATed to its port; anything else from outside drops"),
    _stage(Table.L3_ROUTE, _IN, {"metadata", "eth_type", "ipv4_dst"},
           [Table.L3_RESOLVE, Table.L3_SNAT], Miss.DROP,
           "longest prefix -> next hop, the interface's MAC, the next network; the default "
           "route -> the router's way out (its gateway hypervisor, through the tunnel)"),
    _stage(Table.L3_SNAT, _IN, {"metadata", "eth_type"}, [Table.L3_SNAT_COMMIT], Miss.DROP,
           "the way out, on the gateway hypervisor: through the router's conntrack zone, "
           "which undoes a floating IP's DNAT on replies"),
    _stage(Table.L3_SNAT_COMMIT, _IN, {"metadata", "eth_type", "ct_state", "ipv4_src"},
           [Table.L3_SNAT_COMMIT, Table.L3_TO_EXTERNAL], Miss.DROP,
           "replies go on; a new connection from a port with a floating IP is SNATed to it, "
           "from the router's subnets (snat: true) to the router's address"),
    _stage(Table.L3_TO_EXTERNAL, _IN, {"metadata", "eth_type", "ipv4_dst"},
           [Table.L3_RESOLVE], Miss.DROP,
           "next hop on the external network (the destination if on it, else its gateway), "
           "the router's external MAC"),
    _stage(Table.L3_RESOLVE, _IN, {"metadata", REG_NEXTHOP}, [Table.L2_LOOKUP], Miss.DROP,
           "next hop -> its MAC, then L2_LOOKUP of the next network; on an external "
           "network, out of its port (a MAC not learned yet: to the controller, which ARPs)"),
    _stage(Table.LB_REPLY, _OUT, {"metadata", "eth_type", "ipv4_src", "ip_proto", "tcp_src",
                                  "udp_src"}, [Table.ACL_TO_VM_CT], Miss.CONTINUE,
           "from a member's address and target port -> the tenant's conntrack zone, which "
           "gives a reply the VIP's address back; the rest goes on"),
    _stage(Table.ACL_TO_VM_CT, _OUT, {REG_OUT, "eth_type"}, [Table.ACL_TO_VM], Miss.CONTINUE,
           "IPv4 to a firewalled port -> conntrack in the port's own zone; the rest goes on"),
    _stage(Table.ACL_TO_VM, _OUT, {REG_OUT, REG_FW, "conj_id", *_ACL_FIELDS, "ipv4_src"},
           [Table.QOS_SHARED_TO_VM], Miss.CONTINUE,
           "as ACL_FROM_VM, with the port's ingress rules"),
    _stage(Table.QOS_SHARED_TO_VM, _OUT, {REG_OUT}, [Table.OUTPUT], Miss.CONTINUE,
           "to a port of a tenant with an aggregate policy: the tenant's meter to its ports "
           "on this hypervisor; the rest goes on"),
    _stage(Table.OUTPUT, _OUT, set(), [], Miss.OUTPUT,
           "out of the port in the output register"),
)}


def switch_learned(table: int, priority: int) -> bool:
    """A flow a learn action made (a learned stage's, above its miss): the switch's, not
    the reconcile's to compare or delete."""
    stage = STAGES.get(table)
    return stage is not None and stage.learned and priority > 0


def following(table: Table) -> Table:
    """The next declared stage of the same direction."""
    stage = STAGES[table]
    if stage.direction == Direction.BRANCH:
        raise PipelineError(f"{table.name} is a branch: it continues only where it says")
    later = [t for t, s in STAGES.items() if s.direction == stage.direction and t > table]
    if not later:
        raise PipelineError(f"{table.name} is the last {stage.direction.name.lower()} stage; "
                            f"it cannot continue")
    return min(later)


def first_egress() -> Table:
    """Where a packet goes once its output port is chosen."""
    return min(t for t, s in STAGES.items() if s.direction == Direction.EGRESS)


def miss_flows() -> list[Flow]:
    return [s.miss_flow() for s in STAGES.values()]


_JUMPS = frozenset({Goto, Resubmit, CT})  # actions with a .table to continue in


def check_flow(flow: Flow, groups: dict[int, Group] | None = None) -> None:
    """Refuse a flow its stage does not allow.  ``groups``: the groups compiled with it, so
    that a group's buckets are held to the stage of the flows that use it."""
    # Runs for every compiled flow: kept to plain loops (it is a tenth of a cold compile).
    stage = STAGES.get(flow.table)
    if stage is None:
        raise PipelineError(f"{flow}: table {int(flow.table)} has no declared stage")
    allowed = stage.matches
    for name, _ in flow.match:
        if name not in allowed:
            raise PipelineError(f"{flow}: {flow.table.name} flows may not match {name} "
                                f"(allowed: {', '.join(sorted(allowed)) or 'nothing'})")
    targets, learns = [], []
    for a in flow.actions:
        kind = type(a)
        if kind in _JUMPS:
            if kind is Goto and a.table <= flow.table:
                raise PipelineError(f"{flow}: a goto must go to a later table (OpenFlow); "
                                    f"use resubmit to run an earlier one")
            if a.table is not None:
                targets.append(a.table)
        elif kind is GroupAction and groups is not None:
            group = groups.get(a.group_id)
            if group is None:
                raise PipelineError(f"{flow}: group {a.group_id:#x} was not compiled with it")
            for bucket in group.buckets:
                targets += jump_targets(bucket)
                learns += [b for b in bucket if type(b) is Learn]
        elif kind is Learn:
            learns.append(a)
    for learn in learns:
        if not STAGES[learn.table].learned:
            raise PipelineError(f"{flow}: a learn may add flows to a learned stage only, not "
                                f"{learn.table.name}, whose flows the reconcile owns")
    for t in targets:
        if t not in stage.next:
            raise PipelineError(f"{flow}: {flow.table.name} may not continue in {t.name} "
                                f"(allowed: {', '.join(n.name for n in stage.next) or 'none'})")
