"""Storm control: what a VM floods passes its own meter before the flood group copies it;
floods that arrive from a tunnel were metered where they entered."""
import pytest
import yaml

from netvirt.errors import ConfigError
from netvirt.pipeline.layout import PUNT_METER_ID, TUNNEL_OFPORT, flood_meter_id
from netvirt.pipeline.records import Goto, GroupAction, MeterAction
from netvirt.pipeline.tables import Table
from netvirt.reconcile.compiler import compile_flows
from netvirt.topology import Topology

from .helpers import ROOT_EXAMPLES, compile_all, load_data, sequential_inventory


def _demo(limit=None):
    data = yaml.safe_load((ROOT_EXAMPLES / "demo.yaml").read_text())
    if limit is not None:
        for t in data["tenants"]:
            for n in t["networks"]:
                n["flood_limit"] = limit
    return load_data(data)


def test_a_vms_flood_is_metered_at_its_networks_rate_and_a_tunnels_is_not():
    lc = _demo({"rate": 50, "burst": 10})
    topo, inv, per_hv, net = compile_all(lc)
    web1 = inv["hv1"].ofports[topo.port("blue", "web1").port.interface]
    meters = {m.meter_id: m for m in per_hv["hv1"].meters}
    assert (meters[flood_meter_id(web1)].rate, meters[flood_meter_id(web1)].burst) == (50, 10)
    broadcast = {"eth_src": "02:00:00:00:01:01", "eth_dst": "ff:ff:ff:ff:ff:ff",
                 "eth_type": 0x0806, "arp_op": 1, "arp_spa": "10.0.0.1",
                 "arp_sha": "02:00:00:00:01:01", "arp_tpa": "10.0.0.99"}
    res = net.inject("hv1", web1, broadcast)
    flood = [s.flow for s in res.steps if s.table == Table.L2_LOOKUP][0]
    assert MeterAction(flood_meter_id(web1)) in flood.actions
    assert Goto(Table.FLOOD) in flood.actions  # and on to the network's group
    assert any(isinstance(a, GroupAction) for s in res.steps if s.table == Table.FLOOD
               for a in s.flow.actions)
    from_tunnel = [f for f in per_hv["hv1"].flows if f.table == Table.L2_LOOKUP
                   and Goto(Table.FLOOD) in f.actions and "in_port" not in dict(f.match)]
    assert from_tunnel and not any(isinstance(a, MeterAction) for f in from_tunnel
                                   for a in f.actions)
    assert all(dict(f.match).get("in_port") != TUNNEL_OFPORT for f in per_hv["hv1"].flows
               if f.table == Table.L2_LOOKUP)


def test_rate_zero_turns_the_limit_off():
    lc = _demo({"rate": 0})
    topo = Topology(lc.config)
    d = compile_flows(topo, "hv1", sequential_inventory(topo)["hv1"])
    assert {m.meter_id for m in d.meters} == {PUNT_METER_ID}
    assert not any(isinstance(a, MeterAction) for f in d.flows if f.table == Table.L2_LOOKUP
                   for a in f.actions)


@pytest.mark.parametrize("limit, why", [({"rate": -1}, "greater than or equal to 0"),
                                         ({"rate": 10, "burst": 0}, "greater than or equal to 1"),
                                         ({"rate": "lots"}, "integer"),
                                         ({"pps": 10}, "unknown key 'pps'")])
def test_a_bad_flood_limit_is_refused_with_its_location(limit, why):
    with pytest.raises(ConfigError) as e:
        _demo(limit)
    assert why in str(e.value) and "flood_limit" in str(e.value)
