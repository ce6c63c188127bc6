"""The codec's shortcuts (matches handed over in OXM order, actions and instruction lists
serialized once) must give exactly the bytes os-ken's plain API gives, for every flow and
group we compile."""
import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from bench import gen
from netvirt.config import load_file
from netvirt.controller import ofcodec
from netvirt.reconcile.diff import InstalledFlow

from .helpers import ROOT_EXAMPLES, compile_all, load_data


class Datapath:
    ofproto, ofproto_parser, id, xid = ofp, parser, 1, 0

    def set_xid(self, msg):
        msg.xid = 0


def _plain_add(dp, flow):
    return parser.OFPFlowMod(
        datapath=dp, cookie=flow.cookie, table_id=int(flow.table), command=ofp.OFPFC_ADD,
        priority=flow.priority, flags=ofp.OFPFF_SEND_FLOW_REM,
        match=parser.OFPMatch(**dict(flow.match)), instructions=ofcodec.instructions(flow.actions))


@pytest.mark.parametrize("loaded", [load_file(ROOT_EXAMPLES / "demo.yaml"),
                                    load_data(gen.config(60, 3))], ids=["demo", "generated"])
def test_flow_mods_are_byte_for_byte_what_os_ken_makes(loaded):
    dp = Datapath()
    per_hv = compile_all(loaded)[2].values()
    flows = [f for d in per_hv for f in d.flows]
    assert {type(a).__name__ for f in flows for a in f.actions} >= {
        "Output", "SetField", "Move", "GroupAction", "WriteMetadata", "Goto"}
    for f in flows:
        assert ofcodec.encode(ofcodec.add_flow(dp, f)) == ofcodec.encode(_plain_add(dp, f)), f
        deleted = InstalledFlow(int(f.table), f.priority, f.cookie, f.match)
        plain = parser.OFPFlowMod(
            datapath=dp, cookie=f.cookie, cookie_mask=ofcodec.ALL_ONES_64, table_id=int(f.table),
            command=ofp.OFPFC_DELETE_STRICT, priority=f.priority, out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY, match=parser.OFPMatch(**dict(f.match)))
        assert ofcodec.encode(ofcodec.delete_flow(dp, deleted)) == ofcodec.encode(plain), f
    for g in {g for d in per_hv for g in d.groups}:
        plain = parser.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_ALL, g.group_id, [
            parser.OFPBucket(actions=[ofcodec._action(a) for a in b]) for b in g.buckets])
        assert ofcodec.encode(ofcodec.add_group(dp, g)) == ofcodec.encode(plain), g
