"""The pipeline's vocabulary: declared stages refuse bad flows, any flows sort, two origins
of one flow merge, and cookies do not depend on how anything is named or printed."""
import os
from enum import IntEnum
from pathlib import Path

import pytest

from netvirt.config import load_file
from netvirt.errors import PipelineError
from netvirt.pipeline.layout import REG_OUT
from netvirt.pipeline.records import (CT, NAT, Flow, Goto, Group, GroupAction, Learn, Output,
                                      OutputReg, Resubmit, SetField)
from netvirt.pipeline.stages import (STAGES, Direction, check_flow, first_egress, following,
                                     miss_flows, switch_learned)
from netvirt.pipeline.tables import Table
from netvirt.reconcile.compiler import Compiler
from netvirt.reconcile.features import Feature
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

from .helpers import ROOT_EXAMPLES, compile_all

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "demo-cookies.txt"


def test_every_table_has_a_stage_and_its_miss_comes_from_the_declaration():
    assert set(STAGES) == set(Table)
    misses = {f.table: f for f in miss_flows()}
    assert misses[Table.PORT_SECURITY].actions == ()  # drop
    assert misses[Table.CLASSIFY].actions == (Goto(Table.PORT_SECURITY),)
    assert misses[Table.OUTPUT].actions == (OutputReg(REG_OUT),)
    assert STAGES[first_egress()].direction == Direction.EGRESS


@pytest.mark.parametrize("flow, why", [
    (Flow.make(Table.L2_LOOKUP, 5, {"ipv4_src": "10.0.0.1"}, [], "t"), "may not match ipv4_src"),
    (Flow.make(Table.CLASSIFY, 5, {"in_port": 1}, [Goto(Table.L2_LOOKUP)], "t"),
     "may not continue in L2_LOOKUP"),
    (Flow.make(Table.L2_LOOKUP, 5, {}, [Goto(Table.ARP_RESPONDER)], "t"), "later table"),
    (Flow.make(Table.PORT_SECURITY, 5, {}, [CT(table=Table.OUTPUT)], "t"),
     "may not continue in OUTPUT"),
])
def test_a_stage_refuses_a_flow_it_does_not_allow(flow, why):
    with pytest.raises(PipelineError, match=why):
        check_flow(flow)


def test_a_group_is_held_to_the_stage_of_the_flow_that_uses_it():
    bad = Group(((Resubmit(Table.CLASSIFY),),), "t")
    flow = Flow.make(Table.L2_LOOKUP, 5, {}, [GroupAction(bad.group_id)], "t")
    with pytest.raises(PipelineError, match="may not continue in CLASSIFY"):
        check_flow(flow, {bad.group_id: bad})
    good = Group(((SetField(REG_OUT, 1), Resubmit(first_egress())),), "t")
    check_flow(Flow.make(Table.L2_LOOKUP, 5, {}, [GroupAction(good.group_id)], "t"),
               {good.group_id: good})


def test_a_learn_may_fill_a_learned_stage_only_and_a_branch_has_no_following_stage():
    learn = Learn(Table.L2_LOOKUP, 100, 10, 0, (("ipv4_src", 32, None),), ())
    group = Group(((learn,),), "t", "select", (1,))
    flow = Flow.make(Table.LB_AFFINE, 90, {}, [GroupAction(group.group_id)], "t")
    with pytest.raises(PipelineError, match="learned stage only, not L2_LOOKUP"):
        check_flow(flow, {group.group_id: group})
    ok = Group(((Learn(Table.LB_AFFINITY, 100, 10, 0, (("ipv4_src", 32, None),), ()),),), "t",
               "select", (1,))
    check_flow(Flow.make(Table.LB_AFFINE, 90, {}, [GroupAction(ok.group_id)], "t"),
               {ok.group_id: ok})
    assert switch_learned(Table.LB_AFFINITY, 100) and not switch_learned(Table.LB_AFFINITY, 0)
    assert not switch_learned(Table.L2_LOOKUP, 100)
    assert following(Table.LB_UNHAIRPIN) == Table.ARP_RESPONDER  # branches are passed by
    with pytest.raises(PipelineError, match="is a branch"):
        following(Table.LB_AFFINE)


def test_a_masked_and_an_exact_match_on_one_field_sort():
    exact = Flow.make(Table.L2_LOOKUP, 10, {"metadata": 5}, [], "t")
    masked = Flow.make(Table.L2_LOOKUP, 10, {"metadata": (5, 0xFF)}, [], "t")
    mac = Flow.make(Table.L2_LOOKUP, 10, {"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
                    [], "t")
    assert sorted([masked, exact, mac]) == sorted([exact, mac, masked])
    assert len({exact, masked, mac}) == 3


def _views(topo, hv, inv):
    return ["a", "b"]


def _same_flow(view):
    # two views (two config objects) that both want the very same flow
    return [Flow.make(Table.L2_LOOKUP, 7, {"eth_dst": "02:00:00:00:00:09"}, [],
                      f"tenant/x/port/{view}")], [], []


def test_two_origins_of_one_flow_merge_and_part_again():
    topo = Topology(load_file(ROOT_EXAMPLES / "demo.yaml").config)
    c = Compiler((Feature("test", _views, _same_flow),))
    both = [f for f in c.compile(topo, "hv1", Inventory()).flows if f.priority == 7]
    assert len(both) == 1 and both[0].origins == ("tenant/x/port/a", "tenant/x/port/b")
    c.features = (Feature("test", lambda *_: ["b"], _same_flow),)
    one = [f for f in c.compile(topo, "hv1", Inventory()).flows if f.priority == 7]
    assert len(one) == 1 and one[0].origins == ("tenant/x/port/b",)
    assert one[0].cookie != both[0].cookie  # a changed flow record: replaced in place


class Renamed(IntEnum):  # the same ids under other names
    IN = 0
    SECURITY = 10
    ARP = 50
    LOOKUP = 60
    OUT = 90


def test_renaming_a_table_changes_no_cookie():
    flows = [Flow.make(Table.L2_LOOKUP, 100, {"eth_dst": "02:00:00:00:00:01"},
                       [SetField(REG_OUT, 1), Goto(Table.OUTPUT)], "tenant/a/port/b"),
             Flow.make(Table.CLASSIFY, 1, {}, [CT(True, 3, Table.L2_LOOKUP, NAT("src", "1.2.3.4"))],
                       "tenant/a/router/r")]
    renamed = [Flow.make(Renamed.LOOKUP, 100, {"eth_dst": "02:00:00:00:00:01"},
                         [SetField(REG_OUT, 1), Goto(Renamed.OUT)], "tenant/a/port/b"),
               Flow.make(Renamed.IN, 1, {}, [CT(True, 3, Renamed.LOOKUP, NAT("src", "1.2.3.4"))],
                         "tenant/a/router/r")]
    assert [f.cookie for f in flows] == [f.cookie for f in renamed]
    assert str(flows[0]) != str(renamed[0])  # only the printing differs


def test_demo_cookies_match_golden():
    """Cookies are what the switches hold: a change here reinstalls every flow on upgrade.
    Regenerate with NETVIRT_UPDATE_GOLDEN=1 only for an intended change of identity."""
    _, _, per_hv, _ = compile_all(load_file(ROOT_EXAMPLES / "demo.yaml"))
    lines = sorted(f"{hv} {int(f.table)} {f.priority} {f.cookie:#018x} {f.origin}"
                   for hv, d in per_hv.items() for f in d.flows)
    lines += sorted(f"{hv} group {g.group_id:#010x}" for hv, d in per_hv.items() for g in d.groups)
    text = "\n".join(lines) + "\n"
    if os.environ.get("NETVIRT_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_a_group_of_another_kind_is_another_group():
    buckets = ((Output(1),), (Output(2),))
    assert Group(buckets).group_id != Group(buckets, kind="select", weights=(1, 1)).group_id
    assert Group(buckets, kind="select", weights=(1, 1)).group_id != \
        Group(buckets, kind="select", weights=(1, 2)).group_id
    with pytest.raises(ValueError):
        Group(buckets, kind="select")
