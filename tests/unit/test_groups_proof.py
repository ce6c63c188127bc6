"""The isolation proof inside a tenant: each side of each firewalled port is sent the first
packet of every class of new connection to or from every port it may reach, and must let
through nothing its security groups do not allow.  A flow that opens more (as a compiler
bug would) is found, with the port, the side, the other port, the packet and the flows with
their YAML lines."""
from dataclasses import dataclass

import yaml

from netvirt.cli import main
from netvirt.config import load_file
from netvirt.inspect.groups import GroupsProver, classes, describe_breach
from netvirt.pipeline.layout import ETH_IP, IPPROTO_TCP, REG_OUT
from netvirt.pipeline.records import Flow, Goto
from netvirt.pipeline.tables import Table

from .helpers import ROOT_EXAMPLES, compile_all, load_data

FIREWALLED = ROOT_EXAMPLES / "firewalled.yaml"


@dataclass
class Compiled:
    flows: list
    groups: list


def _tampered(per_hv, hv, flow):
    out = {h: Compiled(list(d.flows), list(d.groups)) for h, d in per_hv.items()}
    out[hv].flows.append(flow)
    return out


def test_the_compiled_firewalls_hold_to_their_groups_and_a_second_proof_sends_nothing():
    lc = load_file(FIREWALLED)
    topo, inv, per_hv, net = compile_all(lc)
    prover = GroupsProver()
    assert prover.prove(topo, per_hv, inv) == []
    sent = prover.sent
    assert sent > 0
    assert prover.prove(topo, per_hv, inv) == [] and prover.sent == sent  # unchanged


def test_a_flow_that_opens_what_no_rule_allows_is_named_with_its_pair_packet_and_line():
    lc = load_file(FIREWALLED)
    topo, inv, per_hv, _ = compile_all(lc)
    db1 = topo.port("shop", "db1")
    ofport = inv["hv1"].ofports[db1.port.interface]
    # as a compiler bug would: db1 takes ssh from anyone
    bad = Flow.make(Table.ACL_TO_VM, 1000, {REG_OUT: ofport, "eth_type": ETH_IP,
                                            "ip_proto": IPPROTO_TCP, "tcp_dst": 22},
                    [Goto(Table.OUTPUT)], "tenant/shop/security_group/db/rule/0")
    tampered = _tampered(per_hv, "hv1", bad)
    found = GroupsProver().prove(topo, tampered, inv)
    # db1's ingress lets ssh in from every port it may reach (web1's and web2's own egress
    # rules would still stop theirs: each side is held to its own rules)
    assert sorted((v.port, v.side, v.remote, v.packet) for v in found) == [
        ("shop/db1", "ingress", f"shop/{p}", "tcp 22") for p in ("client", "web1", "web2")]
    text = describe_breach(min(found, key=lambda v: v.remote), lc)
    assert ("shop/db1's firewall lets a tcp 22 connection in from shop/client, which its "
            "ingress rules (and its tenant's default) do not allow") in text
    assert "prio=1000" in text and "firewalled.yaml:30:13" in text  # the flow and its line


def test_an_egress_flow_that_lets_out_what_no_rule_allows_is_found_too():
    lc = load_file(FIREWALLED)
    topo, inv, per_hv, _ = compile_all(lc)
    web1 = topo.port("shop", "web1")
    ofport = inv["hv1"].ofports[web1.port.interface]
    bad = Flow.make(Table.ACL_FROM_VM, 1000, {"in_port": ofport, "eth_type": ETH_IP,
                                              "ip_proto": IPPROTO_TCP, "tcp_dst": 22},
                    [Goto(Table.LB_CT)], "pipeline")  # whoever made it: the port's packets meet it
    found = GroupsProver().prove(topo, _tampered(per_hv, "hv1", bad), inv)
    assert sorted((v.port, v.side, v.remote, v.packet) for v in found) == [
        ("shop/web1", "egress", f"shop/{p}", "tcp 22") for p in ("client", "db1", "web2")]


def test_classes_cross_every_range_at_both_edges():
    data = yaml.safe_load(FIREWALLED.read_text())
    data["tenants"][0]["security_groups"][1]["rules"].append(
        {"direction": "ingress", "protocol": "udp", "ports": "1000-2000"})
    t = load_data(data, "c.yaml").config.tenants[0]
    got = classes(t)
    assert {("udp", p, None, None) for p in (999, 1000, 2000, 2001)} <= set(got)
    assert {("tcp", p, None, None) for p in (79, 80, 81, 5431, 5432, 5433)} <= set(got)
    assert ("icmp", None, 8, 0) in got and ("icmp", None, 9, 0) in got


def test_validate_deep_says_every_firewall_holds_to_its_groups(capsys):
    assert main(["validate", "--deep", str(FIREWALLED)]) == 0
    assert "every firewall opens no connection its security groups do not allow" in \
        capsys.readouterr().out
