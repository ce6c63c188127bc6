"""Desired vs installed: set arithmetic by (table, priority, cookie), replace in place."""
import copy

import yaml

from netvirt.config import load_file
from netvirt.reconcile.compiler import compile_flows
from netvirt.pipeline.layout import PUNT_METER_ID
from netvirt.reconcile.diff import InstalledFlow, plan
from netvirt.topology import Topology

from .helpers import ROOT_EXAMPLES, load_data, sequential_inventory


def installed(desired, *extra):
    flows = [InstalledFlow(int(f.table), f.priority, f.cookie, f.match) for f in desired.flows]
    return {f.key: f for f in flows + list(extra)}


def _compile(data, hv="hv1"):
    lc = load_data(data)
    topo = Topology(lc.config)
    return compile_flows(topo, hv, sequential_inventory(topo)[hv])


def _demo_data():
    return yaml.safe_load((ROOT_EXAMPLES / "demo.yaml").read_text())


def test_empty_switch_gets_everything_and_a_synced_one_nothing():
    topo = Topology(load_file(ROOT_EXAMPLES / "demo.yaml").config)
    d = compile_flows(topo, "hv1", sequential_inventory(topo)["hv1"])
    p = plan(d, {}, set())
    assert len(p.add_flows) == len(d.flows) and not p.delete_flows
    assert {g.group_id for g in p.add_groups} == {g.group_id for g in d.groups}
    assert set(p.add_meters) == set(d.meters) and d.meters
    meters = {m.meter_id: m for m in d.meters}
    assert plan(d, installed(d), {g.group_id for g in d.groups}, meters).empty


def test_meters_are_added_changed_in_place_and_removed():
    from netvirt.pipeline.records import Meter

    d = _compile(_demo_data())
    punt = next(m for m in d.meters if m.meter_id == PUNT_METER_ID)
    have = {m.meter_id: m for m in d.meters if m is not punt}
    p = plan(d, installed(d), {g.group_id for g in d.groups},
             {**have, punt.meter_id: Meter(punt.meter_id, punt.rate * 2), 9: Meter(9, 5)})
    assert p.modify_meters == (punt,) and p.delete_meters == (9,) and not p.add_meters


def test_foreign_flows_are_deleted_and_stale_groups_last():
    data = _demo_data()
    d = _compile(data)
    junk = InstalledFlow(0, 5, 0x1234, (("in_port", 99),))
    p = plan(d, installed(d, junk), {g.group_id for g in d.groups} | {77})
    assert p.delete_flows == (junk,) and not p.add_flows and p.delete_groups == (77,)


def test_changing_one_ip_touches_only_that_ports_flows_on_its_own_hypervisor():
    data = _demo_data()
    changed = copy.deepcopy(data)
    changed["tenants"][0]["ports"][0]["ips"] = ["10.0.0.11"]  # blue/web1 lives on hv1
    for hv, n in (("hv1", 3), ("hv2", 0), ("hv3", 0)):
        before, after = _compile(data, hv), _compile(changed, hv)
        p = plan(after, installed(before), {g.group_id for g in before.groups})
        origins = {f.origin for f in p.add_flows} | {
            f.origin for f in before.flows if f.cookie in {d.cookie for d in p.delete_flows}}
        # hv1 admits web1 from the new address (IPv4 and ARP) and answers ARP for it; the
        # other hypervisors reach web1 by MAC, which did not change
        assert origins == ({"tenant/blue/port/web1"} if n else set()), hv
        assert len(p.add_flows) == len(p.delete_flows) == n and not p.add_groups, hv


def test_same_match_new_actions_is_an_add_without_delete():
    data = _demo_data()
    before = _compile(data, "hv2")
    changed = copy.deepcopy(data)
    changed["hypervisors"][0]["underlay_ip"] = "192.168.50.9/24"  # hv1 moves: tunnels change
    after = _compile(changed, "hv2")
    p = plan(after, installed(before), {g.group_id for g in before.groups})
    replaced = {(int(f.table), f.priority, f.match) for f in p.add_flows}
    assert not [f for f in p.delete_flows if (f.table, f.priority, f.match) in replaced]
    assert any(f.table.name == "L2_LOOKUP" for f in p.add_flows)
