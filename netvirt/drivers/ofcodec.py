"""The only place where netvirt records become os-ken OpenFlow 1.3 messages and back.

os-ken does all the encoding.  Two shortcuts keep it from costing ~110 us per flow mod,
most of a large apply's CPU (tests/unit/test_ofcodec.py checks that the bytes are exactly
what os-ken's plain API makes):
- a match is handed to OFPMatch already in OXM order (``_ordered_fields``, the form os-ken's
  own parser builds), which skips the user-value normalization OFPMatch(**fields) does;
- an action, and an instruction list, is serialized by os-ken once and its bytes reused:
  most flows share their instruction list (every port of a network is admitted with the
  same write_metadata + goto; every remote port behind one hypervisor is one tunnel
  output), and the flows whose lists are their own share most of their actions (an ARP
  reply is five register moves, the same for every port, and three set-fields).
"""
from __future__ import annotations

import struct
from functools import lru_cache

from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from netvirt.errors import PipelineError
from netvirt.pipeline.records import (CT, INSTRUCTIONS, NAT, ClearInPort, Conjunction, DecTtl,
                                      Flow, Goto, Group, GroupAction, Learn, Meter, MeterAction,
                                      Move, Output, OutputReg, Resubmit, SetField, WriteMetadata)
from netvirt.pipeline.layout import REG_OUT
from netvirt.reconcile.diff import InstalledFlow

ALL_ONES_64 = 0xFFFFFFFFFFFFFFFF
_PORTS = {"IN_PORT": ofp.OFPP_IN_PORT, "CONTROLLER": ofp.OFPP_CONTROLLER}
# OVS's nx_nat_flags (lib/ofp-actions.c); os-ken names the range bits only
NAT_F_SRC, NAT_F_DST = 1 << 0, 1 << 1
# OVS's nx_learn_flags (include/openflow/nicira-ext.h); os-ken names none
LEARN_F_DELETE_LEARNED = 1 << 1
_GROUP_TYPES = {"all": ofp.OFPGT_ALL, "select": ofp.OFPGT_SELECT}
_METER_UNITS = {"pktps": ofp.OFPMF_PKTPS, "kbps": ofp.OFPMF_KBPS}


def _nat(n: NAT):
    flags = {"src": NAT_F_SRC, "dst": NAT_F_DST, "": 0}[n.kind]
    return parser.NXActionNAT(flags, range_ipv4_min=n.ip_min or "",
                              range_ipv4_max=n.ip_max or "", range_proto_min=n.port_min,
                              range_proto_max=n.port_max)


def _ct(a: CT):
    inner = [_nat(a.nat)] if a.nat is not None else []
    if a.mark is not None:
        inner.append(parser.OFPActionSetField(ct_mark=a.mark))
    # an immediate zone: no source field, the zone in zone_ofs_nbits; else the zone is the
    # low 16 bits of a register
    src, zone = ("", a.zone) if isinstance(a.zone, int) else (a.zone, nicira_ext.ofs_nbits(0, 15))
    return parser.NXActionCT(nicira_ext.NX_CT_F_COMMIT if a.commit else 0, src, zone,
                             nicira_ext.NX_CT_RECIRC_NONE if a.table is None else int(a.table),
                             0, inner)


def _learn(a: Learn):
    # OXM field names: OVS takes OXM headers in a learn's specs as it does NXM ones
    specs = [parser.NXFlowSpecMatch(src=(f, 0) if v is None else v, dst=(f, 0), n_bits=n)
             for f, n, v in a.matches]
    specs += [parser.NXFlowSpecLoad(src=v, dst=(f, 0), n_bits=n) for f, n, v in a.loads]
    return parser.NXActionLearn(table_id=int(a.table), specs=specs, idle_timeout=a.idle_timeout,
                                priority=a.priority, cookie=a.cookie,
                                flags=LEARN_F_DELETE_LEARNED)


def _action(a):
    if isinstance(a, Output):
        # max_len: a packet to the controller comes whole (ignored for other ports)
        return parser.OFPActionOutput(_PORTS.get(a.port, a.port),
                                      ofp.OFPCML_NO_BUFFER if a.port == "CONTROLLER" else 0)
    if isinstance(a, SetField):
        return parser.OFPActionSetField(**{a.field: a.value})
    if isinstance(a, Move):
        return parser.NXActionRegMove(src_field=a.src, dst_field=a.dst, n_bits=a.n_bits)
    if isinstance(a, GroupAction):
        return parser.OFPActionGroup(a.group_id)
    if isinstance(a, OutputReg):
        return parser.NXActionOutputReg(nicira_ext.ofs_nbits(0, 31), a.field, 0)
    if isinstance(a, Resubmit):
        return parser.NXActionResubmitTable(table_id=int(a.table))
    if isinstance(a, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(a, ClearInPort):  # OpenFlow 1.3's set_field refuses in_port 0; OVS's load
        return parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(0, 15), dst="in_port",
                                      value=0)
    if isinstance(a, CT):
        return _ct(a)
    if isinstance(a, Learn):
        return _learn(a)
    if isinstance(a, Conjunction):  # on the wire the clause counts from 0
        return parser.NXActionConjunction(a.clause - 1, a.n_clauses, a.conj_id)
    raise PipelineError(f"the codec has no encoding for {a!r} (a new action record?)")


def instructions(actions: tuple, action=_action) -> list:
    """os-ken's instructions for a flow's actions, in OpenFlow's execution order (meter,
    apply-actions, write-metadata, goto); ``action`` makes each apply-action."""
    out = [parser.OFPInstructionMeter(a.meter_id, ofp.OFPIT_METER)
           for a in actions if isinstance(a, MeterAction)]
    apply = [action(a) for a in actions if not isinstance(a, INSTRUCTIONS)]
    if apply:
        out.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, apply))
    for a in actions:
        if isinstance(a, WriteMetadata):
            out.append(parser.OFPInstructionWriteMetadata(a.value, a.mask))
    for a in actions:
        if isinstance(a, Goto):
            out.append(parser.OFPInstructionGotoTable(int(a.table)))
    return out


@lru_cache(maxsize=None)
def _oxm_order(field: str) -> tuple:
    """Where ``field`` goes in a match: OpenFlow's basic fields by OXM number, which puts
    prerequisites (eth_type, ip_proto) before the fields that need them, and Nicira's
    (registers, tunnel metadata, nw_ttl, ct_*) after all of them.  os-ken orders by the
    header number alone, which puts every Nicira field first: OVS refuses nw_ttl ahead of
    eth_type (OFPBMC_BAD_PREREQ)."""
    n = ofp.oxm_from_user_header(field)
    n = n[0] if isinstance(n, tuple) else n
    return (n >> 7 != ofp.OFPXMC_OPENFLOW_BASIC, n)  # (class << 7 | field)


def match(fields: tuple):
    """An OFPMatch of a Flow's match, ((field, value), ...)."""
    return parser.OFPMatch(_ordered_fields=sorted(fields, key=lambda kv: _oxm_order(kv[0])))


class _Serialized:
    """What os-ken serialized once, written again where a message asks for it (os-ken's
    containers call serialize(buf, offset) and then read len)."""

    def __init__(self, data: bytes):
        self.data, self.len = data, len(data)

    def serialize(self, buf: bytearray, offset: int) -> None:
        if len(buf) < offset:
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + self.len] = self.data


class _SerializedAction(_Serialized, parser.OFPAction):
    pass


class _SerializedInstructions(_Serialized, parser.OFPInstruction):
    pass


def _serialize(objs: list) -> bytes:
    buf = bytearray()
    for o in objs:
        start = len(buf)
        o.serialize(buf, start)
        # os-ken declares an action's padded length but writes only its data: a NAT with a
        # port range (22 bytes, 24 declared) written last would leave the buffer short
        buf.extend(bytes(start + o.len - len(buf)))
    return bytes(buf)


@lru_cache(maxsize=1 << 16)
def _serialized_action(a) -> _SerializedAction:
    return _SerializedAction(_serialize([_action(a)]))


@lru_cache(maxsize=1 << 16)
def _serialized_instructions(actions: tuple) -> _SerializedInstructions:
    return _SerializedInstructions(_serialize(instructions(actions, _serialized_action)))


def add_flow(dp, flow: Flow):
    # SEND_FLOW_REM: a flow deleted behind our back is reported at once, and repaired.
    return parser.OFPFlowMod(
        datapath=dp, cookie=flow.cookie, table_id=int(flow.table), command=ofp.OFPFC_ADD,
        priority=flow.priority, flags=ofp.OFPFF_SEND_FLOW_REM, match=match(flow.match),
        instructions=[_serialized_instructions(flow.actions)])


# Serialized ADD messages by flow key (table, priority, cookie; the cookie digests the
# content).  Flows recur: the same ARP-responder flow on every hypervisor of a network, every
# flow again when a vswitchd restarts.  Building one costs ~85 us in os-ken; a hit, ~1 us.
_ENCODED_ADDS: dict[tuple, bytes] = {}
ENCODED_CACHE_MAX = 1 << 20


def encode(msg) -> bytes:
    """The message's bytes with xid 0 (with_xid() gives each sending its own)."""
    msg.xid = 0
    msg.serialize()
    return bytes(msg.buf)


def add_flow_encoded(dp, flow: Flow) -> bytes:
    buf = _ENCODED_ADDS.get(flow.key)
    if buf is None:
        buf = encode(add_flow(dp, flow))
        if len(_ENCODED_ADDS) >= ENCODED_CACHE_MAX:
            _ENCODED_ADDS.clear()
        _ENCODED_ADDS[flow.key] = buf
    return buf


def with_xid(buf: bytes, xid: int) -> bytes:
    out = bytearray(buf)
    struct.pack_into("!I", out, 4, xid)  # ofp_header: version, type, length, xid
    return out


def delete_flow(dp, flow: InstalledFlow):
    # strict + exact cookie: never removes a flow that replaced this one in place.  A flow
    # read from the switch carries the switch's own match; one we installed, ours.
    return parser.OFPFlowMod(
        datapath=dp, cookie=flow.cookie, cookie_mask=ALL_ONES_64, table_id=flow.table,
        command=ofp.OFPFC_DELETE_STRICT, priority=flow.priority, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=flow.raw if flow.raw is not None else match(flow.match))


def add_group(dp, group: Group):
    weights = group.weights or (0,) * len(group.buckets)
    buckets = [parser.OFPBucket(weight=w, actions=[_serialized_action(a) for a in b])
               for w, b in zip(weights, group.buckets, strict=True)]
    return parser.OFPGroupMod(dp, ofp.OFPGC_ADD, _GROUP_TYPES[group.kind], group.group_id,
                              buckets)


def delete_group(dp, group_id: int):
    return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id, [])


def meter_mod(dp, meter: Meter, command=ofp.OFPMC_ADD):
    band = parser.OFPMeterBandDrop(rate=meter.rate, burst_size=meter.burst)
    flags = _METER_UNITS[meter.unit] | (ofp.OFPMF_BURST if meter.burst else 0)
    return parser.OFPMeterMod(dp, command, flags, meter.meter_id, [band])


def modify_meter(dp, meter: Meter):
    return meter_mod(dp, meter, ofp.OFPMC_MODIFY)


def delete_meter(dp, meter_id: int):
    return parser.OFPMeterMod(dp, ofp.OFPMC_DELETE, 0, meter_id, [])


def meter_stats_request(dp):
    return parser.OFPMeterStatsRequest(dp, 0, ofp.OFPM_ALL)


def packet_out(dp, port: int, data: bytes):
    return parser.OFPPacketOut(dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                               [parser.OFPActionOutput(port, 0)], data)


def packet_out_actions(dp, actions: tuple, data: bytes):
    """A packet-out whose actions are ours (e.g. into the pipeline's egress for a port)."""
    return parser.OFPPacketOut(dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                               [_action(a) for a in actions], data)


# An error type's codes, by the prefix OpenFlow 1.3 (and os-ken) names them with
_ERROR_CODES = {ofp.OFPET_HELLO_FAILED: "OFPHFC_", ofp.OFPET_BAD_REQUEST: "OFPBRC_",
                ofp.OFPET_BAD_ACTION: "OFPBAC_", ofp.OFPET_BAD_INSTRUCTION: "OFPBIC_",
                ofp.OFPET_BAD_MATCH: "OFPBMC_", ofp.OFPET_FLOW_MOD_FAILED: "OFPFMFC_",
                ofp.OFPET_GROUP_MOD_FAILED: "OFPGMFC_", ofp.OFPET_PORT_MOD_FAILED: "OFPPMFC_",
                ofp.OFPET_TABLE_MOD_FAILED: "OFPTMFC_", ofp.OFPET_METER_MOD_FAILED: "OFPMMFC_"}


def _const_name(prefix: str, value: int) -> str | None:
    return next((n for n in dir(ofp) if n.startswith(prefix) and getattr(ofp, n) == value), None)


def error_text(msg) -> str:
    """An OpenFlow error as OpenFlow names it (what an operator can look up), with its
    numbers: "OpenFlow error OFPET_BAD_ACTION/OFPBAC_MATCH_INCONSISTENT (type=2 code=10)"."""
    kind = _const_name("OFPET_", msg.type)
    code = _const_name(_ERROR_CODES[msg.type], msg.code) if msg.type in _ERROR_CODES else None
    names = "/".join(n for n in (kind, code) if n)
    return (f"OpenFlow error {names} (type={msg.type} code={msg.code})" if names
            else f"OpenFlow error type={msg.type} code={msg.code}")


def packet_in_fields(msg) -> tuple[int, int, int, bytes, int]:
    """(in_port, table, metadata, packet bytes, output register) of a PacketIn; the
    metadata says which network the packet was in (0: none yet), the register which port
    an egress stage was judging it for (OVS sends the registers that are set)."""
    return (msg.match["in_port"], msg.table_id, msg.match.get("metadata", 0), msg.data,
            msg.match.get(REG_OUT, 0))


def meter_config_request(dp):
    return parser.OFPMeterConfigStatsRequest(dp, 0, ofp.OFPM_ALL)


def installed_meter(stat) -> Meter:
    """A meter as the switch reports its configuration (one drop band, as netvirt makes)."""
    band = stat.bands[0] if stat.bands else None
    unit = "kbps" if stat.flags & ofp.OFPMF_KBPS else "pktps"
    return Meter(stat.meter_id, band.rate if band else 0, band.burst_size if band else 0, unit)


def flow_stats_request(dp, cookie: int = 0, cookie_mask: int = 0, table: int | None = None):
    return parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL if table is None else table,
                                      ofp.OFPP_ANY, ofp.OFPG_ANY, cookie, cookie_mask,
                                      parser.OFPMatch())


def port_stats_request(dp):
    return parser.OFPPortStatsRequest(dp, 0, ofp.OFPP_ANY)


def port_counters(s) -> dict:
    return {"rx_packets": s.rx_packets, "tx_packets": s.tx_packets, "rx_bytes": s.rx_bytes,
            "tx_bytes": s.tx_bytes, "rx_dropped": s.rx_dropped, "tx_dropped": s.tx_dropped}


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
    fields = tuple(sorted((k, _norm(v)) for k, v in stat.match.items()))
    return InstalledFlow(stat.table_id, stat.priority, stat.cookie, fields, stat.match)


def _port(p) -> tuple[int, bool]:
    up = not (p.state & ofp.OFPPS_LINK_DOWN) and not (p.config & ofp.OFPPC_PORT_DOWN)
    return p.port_no, up


def port_infos(port_descs) -> dict[str, tuple[int, bool]]:
    """name -> (ofport, link up) for the switch's real ports (not LOCAL/reserved)."""
    return {_name(p.name): _port(p) for p in port_descs if p.port_no < ofp.OFPP_MAX}


def local_mac(port_descs) -> str | None:
    """The bridge's own (LOCAL) port's MAC, lowercased; None if it reported none."""
    for p in port_descs:
        if p.port_no == ofp.OFPP_LOCAL:
            return p.hw_addr.lower()
    return None


def _name(raw) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def port_status(msg) -> tuple[str, tuple[int, bool] | None]:
    """(name, (ofport, link up)) from a PortStatus; None when the port was deleted."""
    p = msg.desc
    return _name(p.name), None if msg.reason == ofp.OFPPR_DELETE else _port(p)


def is_multipart_more(msg) -> bool:
    return bool(msg.flags & ofp.OFPMPF_REPLY_MORE)


OFP_VERSION = ofp.OFP_VERSION

