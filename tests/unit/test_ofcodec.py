"""The codec's shortcuts (matches handed over in OXM order, actions and instruction lists
serialized once) must give exactly the bytes os-ken's plain API gives, for every flow and
group we compile."""
import pytest
from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from netvirt.config import load_file
from netvirt.drivers import ofcodec
from netvirt.pipeline.records import (CT, NAT, ClearInPort, Conjunction, DecTtl, Flow, Goto, Group, Learn, Meter,
                                      MeterAction,
                                      Output, OutputReg, Resubmit, SetField, WriteMetadata)
from netvirt.pipeline.tables import Table
from netvirt.reconcile.diff import InstalledFlow
from netvirt.testing import gen

from .helpers import ROOT_EXAMPLES, compile_all, load_data


class Datapath:
    ofproto, ofproto_parser, id, xid = ofp, parser, 1, 0

    def set_xid(self, msg):
        msg.xid = 0


def _plain_match(fields):
    """os-ken's own match of these fields, its values normalized by its plain API, in the
    order OVS takes: os-ken puts Nicira fields first, and OVS refuses nw_ttl before
    eth_type; the codec puts OpenFlow's basic fields first."""
    m = parser.OFPMatch(**dict(fields))
    m._fields2.sort(key=lambda kv: ofcodec._oxm_order(kv[0]))
    return m


def _plain_add(dp, flow):
    return parser.OFPFlowMod(
        datapath=dp, cookie=flow.cookie, table_id=int(flow.table), command=ofp.OFPFC_ADD,
        priority=flow.priority, flags=ofp.OFPFF_SEND_FLOW_REM,
        match=_plain_match(flow.match), instructions=ofcodec.instructions(flow.actions))


@pytest.mark.parametrize("loaded", [load_file(ROOT_EXAMPLES / "demo.yaml"),
                                    load_file(ROOT_EXAMPLES / "routed.yaml"),
                                    load_data(gen.config(60, 3))],
                         ids=["demo", "routed", "generated"])
def test_flow_mods_are_byte_for_byte_what_os_ken_makes(loaded):
    dp = Datapath()
    per_hv = compile_all(loaded)[2].values()
    flows = [f for d in per_hv for f in d.flows]
    assert {type(a).__name__ for f in flows for a in f.actions} >= {
        "Output", "OutputReg", "SetField", "Move", "GroupAction", "WriteMetadata", "Goto"}
    for f in flows:
        assert ofcodec.encode(ofcodec.add_flow(dp, f)) == ofcodec.encode(_plain_add(dp, f)), f
        deleted = InstalledFlow(int(f.table), f.priority, f.cookie, f.match)
        plain = parser.OFPFlowMod(
            datapath=dp, cookie=f.cookie, cookie_mask=ofcodec.ALL_ONES_64, table_id=int(f.table),
            command=ofp.OFPFC_DELETE_STRICT, priority=f.priority, out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY, match=_plain_match(f.match))
        assert ofcodec.encode(ofcodec.delete_flow(dp, deleted)) == ofcodec.encode(plain), f
        names = [k for k, _ in ofcodec.match(f.match)._fields2]
        for needs, first in (("nw_ttl", "eth_type"), ("ipv4_dst", "eth_type"),
                             ("icmpv4_type", "ip_proto")):  # OVS's prerequisites
            if needs in names:
                assert names.index(first) < names.index(needs), f
    for g in {g for d in per_hv for g in d.groups}:
        plain = parser.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_ALL, g.group_id, [
            parser.OFPBucket(actions=[ofcodec._action(a) for a in b]) for b in g.buckets])
        assert ofcodec.encode(ofcodec.add_group(dp, g)) == ofcodec.encode(plain), g


# Each new record next to what os-ken's plain API makes of it, written out by hand.
NEW_ACTIONS = [
    (OutputReg("reg1"), lambda: parser.NXActionOutputReg(nicira_ext.ofs_nbits(0, 31), "reg1", 0)),
    (Output("CONTROLLER"), lambda: parser.OFPActionOutput(ofp.OFPP_CONTROLLER,
                                                          ofp.OFPCML_NO_BUFFER)),
    (Resubmit(Table.OUTPUT), lambda: parser.NXActionResubmitTable(0xFFF8, 90)),  # in_port: OF1.0 numbering
    (DecTtl(), lambda: parser.OFPActionDecNwTtl()),
    (ClearInPort(), lambda: parser.NXActionRegLoad(ofs_nbits=15, dst="in_port", value=0)),
    (SetField("eth_src", "02:00:00:00:00:01"),
     lambda: parser.OFPActionSetField(eth_src="02:00:00:00:00:01")),
    (SetField("ipv4_dst", "10.0.0.9"), lambda: parser.OFPActionSetField(ipv4_dst="10.0.0.9")),
    (CT(zone=7, table=Table.L2_LOOKUP),
     lambda: parser.NXActionCT(0, "", 7, 60, 0, [])),
    (CT(commit=True, zone=7, mark=0x2a),
     lambda: parser.NXActionCT(nicira_ext.NX_CT_F_COMMIT, "", 7, nicira_ext.NX_CT_RECIRC_NONE,
                               0, [parser.OFPActionSetField(ct_mark=0x2a)])),
    (CT(commit=True, zone=3, table=Table.OUTPUT, nat=NAT("src", "192.0.2.1", "192.0.2.9", 1024,
                                                          65535)),
     lambda: parser.NXActionCT(1, "", 3, 90, 0, [parser.NXActionNAT(
         1, range_ipv4_min="192.0.2.1", range_ipv4_max="192.0.2.9", range_proto_min=1024,
         range_proto_max=65535)])),
    (CT(zone=3, table=Table.L2_LOOKUP, nat=NAT()),
     lambda: parser.NXActionCT(0, "", 3, 60, 0, [parser.NXActionNAT(0)])),
    (CT(commit=True, zone=3, nat=NAT("dst", "10.0.0.5", port_min=8080)),
     lambda: parser.NXActionCT(1, "", 3, 255, 0, [parser.NXActionNAT(
         2, range_ipv4_min="10.0.0.5", range_proto_min=8080)])),
    # the firewall's: a zone from a register, and conjunctive matches (clause 2/3 is 1 on
    # the wire, as OVS counts)
    (CT(zone="reg5", table=Table.ACL_TO_VM),
     lambda: parser.NXActionCT(0, "reg5", nicira_ext.ofs_nbits(0, 15), 81, 0, [])),
    (CT(commit=True, zone="reg5", mark=0x1234),
     lambda: parser.NXActionCT(1, "reg5", 15, 255, 0, [parser.OFPActionSetField(ct_mark=0x1234)])),
    (Conjunction(0xABCD, 2, 3), lambda: parser.NXActionConjunction(1, 3, 0xABCD)),
    (Learn(Table.LB_AFFINITY, 100, 60, 0x1234 << 32,
           (("eth_type", 16, 0x800), ("metadata", 24, None), ("ipv4_src", 32, None)),
           (("reg7", 32, 0x0A000001),)),
     lambda: parser.NXActionLearn(45, [
         parser.NXFlowSpecMatch(0x800, ("eth_type", 0), 16),
         parser.NXFlowSpecMatch(("metadata", 0), ("metadata", 0), 24),
         parser.NXFlowSpecMatch(("ipv4_src", 0), ("ipv4_src", 0), 32),
         parser.NXFlowSpecLoad(0x0A000001, ("reg7", 0), 32)],
         idle_timeout=60, priority=100, cookie=0x1234 << 32,
         flags=2)),  # NX_LEARN_F_DELETE_LEARNED
]


def _bytes(objs) -> bytes:
    """os-ken's bytes of each object, padded to the length it declares (os-ken leaves a
    NAT with a port range two bytes short of it)."""
    buf = bytearray()
    for o in objs:
        start = len(buf)
        o.serialize(buf, start)
        buf.extend(bytes(start + o.len - len(buf)))
    return bytes(buf)


@pytest.mark.parametrize("record, plain", NEW_ACTIONS, ids=[str(a) for a, _ in NEW_ACTIONS])
def test_each_action_is_what_os_ken_makes_of_it(record, plain):
    assert _bytes([ofcodec._action(record)]) == _bytes([plain()])
    assert ofcodec._serialized_action(record).data == _bytes([plain()])  # the cached form


def test_a_flow_with_a_meter_and_every_kind_of_instruction_is_what_os_ken_makes():
    dp = Datapath()
    flow = Flow.make(Table.L2_LOOKUP, 5, {"metadata": (5, 0xFFFFFF), "eth_dst": "02:00:00:00:00:01"},
                     [MeterAction(3), DecTtl(), Output("CONTROLLER"), WriteMetadata(1, 1),
                      Goto(Table.OUTPUT)], "t")
    plain = parser.OFPFlowMod(
        datapath=dp, cookie=flow.cookie, table_id=60, command=ofp.OFPFC_ADD, priority=5,
        flags=ofp.OFPFF_SEND_FLOW_REM,
        match=parser.OFPMatch(metadata=(5, 0xFFFFFF), eth_dst="02:00:00:00:00:01"),
        instructions=[parser.OFPInstructionMeter(3, ofp.OFPIT_METER),
                      parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [
                          parser.OFPActionDecNwTtl(),
                          parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)]),
                      parser.OFPInstructionWriteMetadata(1, 1),
                      parser.OFPInstructionGotoTable(90)])
    assert ofcodec.encode(ofcodec.add_flow(dp, flow)) == ofcodec.encode(plain)


def test_a_select_group_carries_its_weights():
    dp = Datapath()
    g = Group(((Output(1),), (SetField("ipv4_dst", "10.0.0.2"), Output(2))), "t",
              kind="select", weights=(30, 70))
    plain = parser.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, g.group_id, [
        parser.OFPBucket(weight=30, actions=[parser.OFPActionOutput(1, 0)]),
        parser.OFPBucket(weight=70, actions=[parser.OFPActionSetField(ipv4_dst="10.0.0.2"),
                                             parser.OFPActionOutput(2, 0)])])
    assert ofcodec.encode(ofcodec.add_group(dp, g)) == ofcodec.encode(plain)


@pytest.mark.parametrize("meter, flags", [
    (Meter(1, 100, 10), ofp.OFPMF_PKTPS | ofp.OFPMF_BURST),
    (Meter(2, 5000, 0, "kbps"), ofp.OFPMF_KBPS),
])
def test_meters_are_what_os_ken_makes(meter, flags):
    dp = Datapath()
    band = parser.OFPMeterBandDrop(rate=meter.rate, burst_size=meter.burst)
    for mine, command in ((ofcodec.meter_mod(dp, meter), ofp.OFPMC_ADD),
                          (ofcodec.modify_meter(dp, meter), ofp.OFPMC_MODIFY)):
        assert ofcodec.encode(mine) == ofcodec.encode(
            parser.OFPMeterMod(dp, command, flags, meter.meter_id, [band]))
    assert ofcodec.encode(ofcodec.delete_meter(dp, meter.meter_id)) == ofcodec.encode(
        parser.OFPMeterMod(dp, ofp.OFPMC_DELETE, 0, meter.meter_id, []))


def test_a_meter_read_back_from_a_switch_is_the_meter_installed():
    m = Meter(4, 200, 20)
    stat = parser.OFPMeterConfigStats(flags=ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, meter_id=4,
                                      bands=[parser.OFPMeterBandDrop(rate=200, burst_size=20)])
    assert ofcodec.installed_meter(stat) == m


@pytest.mark.parametrize("name", ["balanced", "routed", "firewalled"])
def test_every_message_is_as_long_as_it_says_and_a_multiple_of_8(name):
    """What OVS checks first (OFPBRC_BAD_LEN otherwise).  os-ken declares a NAT with a port
    (a load balancer's bucket) 24 bytes long and writes 22 of them; the codec pads it."""
    import struct

    dp = Datapath()
    per_hv = compile_all(load_file(ROOT_EXAMPLES / f"{name}.yaml"))[2].values()
    msgs = [ofcodec.add_flow(dp, f) for d in per_hv for f in d.flows]
    msgs += [ofcodec.add_group(dp, g) for d in per_hv for g in d.groups]
    for m in msgs:
        buf = ofcodec.encode(m)
        assert struct.unpack_from("!H", buf, 2)[0] == len(buf) and len(buf) % 8 == 0, m


def test_an_openflow_error_is_named_as_openflow_names_it():
    from types import SimpleNamespace

    named = ofcodec.error_text(SimpleNamespace(type=2, code=10))
    assert named == "OpenFlow error OFPET_BAD_ACTION/OFPBAC_MATCH_INCONSISTENT (type=2 code=10)"
    # a type or code this version does not know still says its numbers
    assert ofcodec.error_text(SimpleNamespace(type=0xFFFE, code=1)) == \
        "OpenFlow error type=65534 code=1"
