"""The only place where netvirt records become os-ken OpenFlow 1.3 messages and back."""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from netvirt.controller.flows import (Flow, Goto, Group, GroupAction, Move, Output, SetField,
                                      WriteMetadata)
from netvirt.reconcile.diff import InstalledFlow

ALL_ONES_64 = 0xFFFFFFFFFFFFFFFF


def _action(a):
    if isinstance(a, Output):
        port = ofp.OFPP_IN_PORT if a.port == "IN_PORT" else a.port
        return parser.OFPActionOutput(port, 0)
    if isinstance(a, SetField):
        return parser.OFPActionSetField(**{a.field: a.value})
    if isinstance(a, Move):
        return parser.NXActionRegMove(src_field=a.src, dst_field=a.dst, n_bits=a.n_bits)
    if isinstance(a, GroupAction):
        return parser.OFPActionGroup(a.group_id)
    raise TypeError(f"not an apply-action: {a!r}")


def instructions(actions: tuple) -> list:
    apply = [_action(a) for a in actions if not isinstance(a, (Goto, WriteMetadata))]
    out = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, apply)] if apply else []
    for a in actions:
        if isinstance(a, WriteMetadata):
            out.append(parser.OFPInstructionWriteMetadata(a.value, a.mask))
    for a in actions:
        if isinstance(a, Goto):
            out.append(parser.OFPInstructionGotoTable(int(a.table)))
    return out


def add_flow(dp, flow: Flow):
    # SEND_FLOW_REM: a flow deleted behind our back is reported at once, and repaired.
    return parser.OFPFlowMod(
        datapath=dp, cookie=flow.cookie, table_id=int(flow.table), command=ofp.OFPFC_ADD,
        priority=flow.priority, flags=ofp.OFPFF_SEND_FLOW_REM,
        match=parser.OFPMatch(**dict(flow.match)), instructions=instructions(flow.actions))


def delete_flow(dp, flow: InstalledFlow):
    # strict + exact cookie: never removes a flow that replaced this one in place.  A flow
    # read from the switch carries the switch's own match; one we installed, ours.
    match = flow.raw if flow.raw is not None else parser.OFPMatch(**dict(flow.match))
    return parser.OFPFlowMod(
        datapath=dp, cookie=flow.cookie, cookie_mask=ALL_ONES_64, table_id=flow.table,
        command=ofp.OFPFC_DELETE_STRICT, priority=flow.priority, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=match)


def add_group(dp, group: Group):
    buckets = [parser.OFPBucket(actions=[_action(a) for a in b]) for b in group.buckets]
    return parser.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_ALL, group.group_id, buckets)


def delete_group(dp, group_id: int):
    return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id, [])


def flow_stats_request(dp):
    return parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                      parser.OFPMatch())


def group_desc_request(dp):
    return parser.OFPGroupDescStatsRequest(dp, 0)


def port_desc_request(dp):
    return parser.OFPPortDescStatsRequest(dp, 0)


def barrier(dp):
    return parser.OFPBarrierRequest(dp)


def _norm(v):
    if isinstance(v, tuple):
        return tuple(_norm(x) for x in v)
    return v.lower() if isinstance(v, str) else v


def installed_flow(stat) -> InstalledFlow:
    match = tuple(sorted((k, _norm(v)) for k, v in stat.match.items()))
    return InstalledFlow(stat.table_id, stat.priority, stat.cookie, match, stat.match)


def port_names(port_descs) -> dict[str, int]:
    """name -> ofport for the switch's real ports (not LOCAL/reserved)."""
    return {_name(p.name): p.port_no for p in port_descs if p.port_no < ofp.OFPP_MAX}


def _name(raw) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def port_status(msg) -> tuple[str, int | None]:
    """(name, ofport) from a PortStatus; ofport None when the port was deleted."""
    p = msg.desc
    deleted = msg.reason == ofp.OFPPR_DELETE
    return _name(p.name), None if deleted else p.port_no


def is_multipart_more(msg) -> bool:
    return bool(msg.flags & ofp.OFPMPF_REPLY_MORE)


OFP_VERSION = ofp.OFP_VERSION

