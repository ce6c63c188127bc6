"""The connectivity matrix's plan: who should reach whom, and probe rounds in which a
target's own counter can tell who pinged it."""
import pytest

from netvirt.host.reach import rounds
from netvirt.topology import Topology

from .helpers import load_data


@pytest.mark.parametrize("addresses", [["a", "b"], ["a", "b", "c"],
                                       ["a", "b", "a", "c", "b", "a", "d"]])
def test_rounds_cover_every_ordered_pair_once_and_no_address_twice_in_a_round(addresses):
    n = len(addresses)
    pairs = [p for r in rounds(addresses) for p in r]
    assert sorted(pairs) == [(i, j) for i in range(n) for j in range(n) if i != j]
    for r in rounds(addresses):
        assert len({addresses[j] for _, j in r}) == len({i for i, _ in r}) == len(r)


def test_only_ports_of_one_network_of_one_tenant_should_reach_each_other():
    hv = [{"name": "hv1", "underlay_ip": "192.168.1.1/24", "ovsdb": "unix:/x"}]
    net = [{"name": "a", "subnets": [{"cidr": "10.0.0.0/24"}]},
           {"name": "b", "subnets": [{"cidr": "10.1.0.0/24"}]}]
    mac = "02:00:00:00:00:01"  # the same MAC in two tenants: validation allows it
    topo = Topology(load_data({"hypervisors": hv, "tenants": [
        {"name": "t1", "networks": net, "ports": [
            {"name": "p1", "network": "a", "hypervisor": "hv1", "ips": ["10.0.0.1"], "mac": mac},
            {"name": "p2", "network": "a", "hypervisor": "hv1", "ips": ["10.0.0.2"]},
            {"name": "p3", "network": "b", "hypervisor": "hv1", "ips": ["10.1.0.1"]}]},
        {"name": "t2", "networks": [{"name": "a", "subnets": [{"cidr": "10.0.0.0/24"}]}],
         "ports": [
            {"name": "p1", "network": "a", "hypervisor": "hv1", "ips": ["10.0.0.1"],
             "mac": mac}]}]}).config)
    p1, p2, p3, q1 = (topo.port(*k) for k in (("t1", "p1"), ("t1", "p2"), ("t1", "p3"),
                                              ("t2", "p1")))
    assert topo.should_reach(p1, p2) and topo.should_reach(p2, p1)
    assert not topo.should_reach(p1, p3)  # another network, and no router between them
    assert not topo.should_reach(p2, q1) and not topo.should_reach(q1, p1)
