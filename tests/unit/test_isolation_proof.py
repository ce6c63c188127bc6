"""The isolation proof over compiled tables: the examples and generated configs are proven
apart; one wrong flow injected into a hypervisor's tables is found, named with the ports
it joins and the flows of the path (the wrong one among them)."""
import time
from types import SimpleNamespace

import pytest

from netvirt.config import load_file
from netvirt.inspect.isolation import Prover, describe, prove
from netvirt.inspect.proof import IsolationProof, provisional
from netvirt.pipeline.layout import TUNNEL_OFPORT, VNI_MASK
from netvirt.pipeline.records import Flow, Goto, Output, SetField, WriteMetadata
from netvirt.pipeline.tables import Table
from netvirt.testing import gen
from netvirt.topology import Topology

from .helpers import ROOT_EXAMPLES, compile_all, load_data


@pytest.mark.parametrize("name", ["demo", "showcase", "routed", "firewalled"])
def test_the_examples_are_proven_apart(name):
    topo, inv, per_hv, _ = compile_all(load_file(ROOT_EXAMPLES / f"{name}.yaml"))
    assert prove(topo, per_hv, inv) == []


def _with(per_hv, hv, *flows):
    d = per_hv[hv]
    return {**per_hv, hv: SimpleNamespace(flows=list(d.flows) + list(flows), groups=d.groups)}


def _demo():
    lc = load_file(ROOT_EXAMPLES / "demo.yaml")
    topo, inv, per_hv, _ = compile_all(lc)
    net = {t.name: {n.name: n for n in t.networks} for t in lc.config.tenants}
    return lc, topo, inv, per_hv, net["blue"]["web"].vni, net["red"]["app"].vni


def _tunnel_into_red(topo, blue: int, red: int) -> Flow:
    """A wrong L2_LOOKUP flow: blue's frames to red/app2's MAC tunnelled into red's network."""
    app2 = topo.port("red", "app2")
    return Flow.make(Table.L2_LOOKUP, 100, {"metadata": (blue, VNI_MASK), "eth_dst": app2.port.mac},
                     [SetField("tunnel_id", red), SetField("tun_ipv4_dst", "192.168.50.2"),
                      Output(TUNNEL_OFPORT)], "tenant/blue/bug")


def test_a_flow_that_tunnels_into_another_tenants_network_is_found_and_named():
    lc, topo, inv, per_hv, blue, red = _demo()
    bug = _tunnel_into_red(topo, blue, red)
    found = prove(topo, _with(per_hv, "hv1", bug), inv)
    # web1's only: web2's and web3's frames to app2's MAC (unknown in blue) flood to hv1,
    # where the wrong flow would send them back into the tunnel they came from, which
    # OpenFlow does not do (the overlay's split horizon; the walk models it)
    assert {(v.source, v.target) for v in found} == {("blue/web1", "red/app2")}
    v = next(v for v in found if v.source == "blue/web1")
    assert ("hv1", bug) in v.path and v.path[-1][0] == "hv2"
    text = describe(v, lc)
    assert text.startswith("blue/web1 can reach red/app2, which the intent does not allow")
    assert "tenant/blue/bug" in text and "demo.yaml:" in text  # the others have their lines


def test_a_port_admitted_into_another_tenants_network_is_found():
    lc, topo, inv, per_hv, blue, red = _demo()
    web1 = topo.port("blue", "web1")
    ofport = inv["hv1"].ofports[web1.port.interface]
    bug = Flow.make(Table.PORT_SECURITY, 200, {"in_port": ofport},
                    [WriteMetadata(red, VNI_MASK), Goto(Table.DHCP)], "tenant/blue/bug")
    found = prove(topo, _with(per_hv, "hv1", bug), inv)
    assert {v.target for v in found} == {"red/app1", "red/app2", "red/app3"}
    assert {v.source for v in found} == {"blue/web1"}


def test_generated_routed_firewalled_and_balanced_configs_at_1000_ports_are_proven_fast():
    data = gen.config(1000, 3, routed=True)
    for i, t in enumerate(data["tenants"]):  # a VIP in every tenant, on its first network's
        net = t["networks"][0]                # .200; every other one with source affinity
        vip = net["subnets"][0]["cidr"].rsplit(".", 1)[0] + ".200"
        t["load_balancers"] = [{"name": "www", "network": net["name"],
                                "vip": {"ip": vip, "protocol": "tcp", "port": 80},
                                "algorithm": "source_ip" if i % 2 else "hash",
                                "members": [{"port": p["name"], "target_port": 8080}
                                            for p in t["ports"] if p["network"] == net["name"]][:3]}]
    t = data["tenants"][0]
    t["security_groups"] = [{"name": "g", "rules": [{"direction": "ingress", "protocol": "tcp",
                                                      "ports": "80"}]}]
    for p in t["ports"][::2]:
        p["security_groups"] = ["g"]
    topo, inv, per_hv, _ = compile_all(load_data(data))
    t0 = time.perf_counter()
    assert prove(topo, per_hv, inv) == []
    assert time.perf_counter() - t0 < 10  # its cost: python -m bench.isolation


def test_a_second_proof_walks_again_only_what_changed_and_agrees_with_a_first():
    lc, topo, inv, per_hv, blue, red = _demo()
    bug = _tunnel_into_red(topo, blue, red)
    p = Prover()
    assert p.prove(topo, per_hv, inv) == []
    first = p.walked
    broken = _with(per_hv, "hv1", bug)
    assert [(v.source, v.target, v.path) for v in p.prove(topo, broken, inv)] == \
        [(v.source, v.target, v.path) for v in prove(topo, broken, inv)]
    assert p.prove(topo, per_hv, inv) == []  # and gone again with the flow
    assert p.walked - first < first


def test_a_port_added_to_a_1000_port_config_is_proven_by_a_small_walk():
    data = gen.config(1000, 3, routed=True)
    proof = IsolationProof()
    topo = Topology(load_data(data).config)
    switches = provisional(topo, {})  # as if the switches had every port of the first
    first = proof.run(topo, switches)
    assert first.violations == () and first.ports == 1000
    walked = proof._prover.walked
    t = data["tenants"][0]
    t["ports"].append(dict(t["ports"][0], name="extra", mac="02:aa:00:00:00:01",
                           ips=["10.0.0.250"], interface="dextra"))
    again = proof.run(Topology(load_data(data).config), switches)
    assert again.violations == () and again.ports == 1001
    assert proof._prover.walked - walked < walked / 5


def test_validate_deep_proves_a_file_without_a_controller(capsys):
    from netvirt.cli import main
    assert main(["validate", "--deep", str(ROOT_EXAMPLES / "showcase.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid: 3 hypervisors" in out
    assert ("isolation proven: no port reaches what the intent does not allow; every firewall "
            "opens no connection its security groups do not allow (6 port(s), ") in out
