"""The agents' Compiler reuses every network whose view did not change, and what it
produces is exactly what a compile from scratch produces."""
import copy

from netvirt.testing import gen
from netvirt.reconcile.compiler import Compiler, compile_flows
from netvirt.config import load_text
from netvirt.topology import Topology

from .helpers import load_data, sequential_inventory


def _topo(data):
    return Topology(load_data(data).config)


def test_a_one_port_change_recompiles_one_network_and_equals_a_full_compile():
    data = gen.config(200, 3)  # 10 networks of 20 ports over 3 hypervisors
    changed = copy.deepcopy(data)
    port = changed["tenants"][0]["ports"][3]
    port["ips"] = ["10.0.0.240"]
    before, after = _topo(data), _topo(changed)
    inv = sequential_inventory(before)  # same interfaces before and after
    for hv in before.hypervisors:
        c = Compiler()
        c.compile(before, hv, inv[hv])
        assert c.recompiled == len(c._last) > 1
        d = c.compile(after, hv, inv[hv])
        # only the port's own hypervisor sees its network change: the address is answered
        # where the port lives, and everywhere else reaches it by MAC
        assert c.recompiled == (1 if hv == port["hypervisor"] else 0), hv
        assert d == compile_flows(after, hv, inv[hv])


def test_a_port_event_recompiles_only_its_network():
    topo = _topo(gen.config(200, 3))
    inv = sequential_inventory(topo)["hv2"]
    c = Compiler()
    c.compile(topo, "hv2", inv)
    iface = next(iter(inv.ofports))
    gone = inv.with_port(iface, None)  # its VM stopped: the interface left br-int
    d = c.compile(topo, "hv2", gone)
    assert c.recompiled == 1
    assert d == compile_flows(topo, "hv2", gone)


def test_two_flows_that_want_one_match_with_other_actions_are_refused_and_it_recovers():
    """A compiler bug (two origins claiming one packet differently) must stop the compile,
    not install half of it, and must not poison the next compile."""
    import pytest

    from netvirt import overlay
    from netvirt.errors import PipelineError
    from netvirt.pipeline.records import Flow
    from netvirt.reconcile.features import Feature
    from netvirt.topology.views import network_views

    broken = {"on": False}

    def compile_network(view):
        flows, groups, meters = overlay.compile_network(view)
        if broken["on"]:  # every flow again, dropping instead of what it does
            flows += [Flow(f.table, f.priority, f.match, (), ("tenant/x/bug",)) for f in flows]
        return flows, groups, meters

    topo = _topo(gen.config(40, 2))
    inv = sequential_inventory(topo)["hv1"]
    c = Compiler((Feature("overlay", network_views, compile_network, overlay.fixed_flows),))
    good = c.compile(topo, "hv1", inv)
    assert good.by_key == compile_flows(topo, "hv1", inv).by_key  # no dhcp network here
    broken["on"] = True
    changed = inv.with_port(next(iter(inv.ofports)), None)
    with pytest.raises(PipelineError, match="two origins want one match with different actions"):
        c.compile(topo, "hv1", changed)
    broken["on"] = False
    assert c.compile(topo, "hv1", inv) == good


def test_a_topology_reuses_the_port_references_of_unchanged_tenants():
    data = gen.config(200, 3)
    first = load_text(gen.text(data), "a.yaml")
    changed = copy.deepcopy(data)
    moved = changed["tenants"][1]["ports"][0]  # p100, a port of t1, moves
    moved["hypervisor"] = "hv1" if moved["hypervisor"] != "hv1" else "hv2"
    second = load_text(gen.text(changed), "b.yaml", previous=first)
    before = Topology(first.config)
    reused, fresh = Topology(second.config, previous=before), Topology(second.config)
    for hv in fresh.hypervisors:
        assert reused.ports_on(hv) == fresh.ports_on(hv)
        assert reused.networks_on(hv) == fresh.networks_on(hv)
    assert reused.port("t0", "p0") is before.port("t0", "p0")
    assert reused.port("t1", "p100") is not before.port("t1", "p100")
