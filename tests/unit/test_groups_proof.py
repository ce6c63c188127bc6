"""The isolation proof inside a tenant: the compiled firewall is sent the first packet of
every class of new connection between every pair of ports and must let through nothing the
security groups do not allow.  A flow that opens more (as a compiler bug would) is found,
with the pair, the packet and the flows with their YAML lines."""
from dataclasses import dataclass

import yaml

from netvirt.cli import main
from netvirt.config import load_file
from netvirt.inspect.groups import GroupsProver, classes, describe_breach
from netvirt.inspect.simulate import Network
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
    assert prover.prove(topo, per_hv, net, inv) == []
    sent = prover.sent
    assert sent > 0
    assert prover.prove(topo, per_hv, net, inv) == [] and prover.sent == sent  # unchanged


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
    found = GroupsProver().prove(topo, tampered, Network.of_config(tampered, topo.config), inv)
    # client has no firewall; web1 and web2's own egress rules still stop ssh
    assert [(v.source, v.target, v.packet) for v in found] == [
        ("shop/client", "shop/db1", "tcp 22")]
    text = describe_breach(found[0], lc)
    assert "can open a tcp 22 connection to shop/db1, which its security groups do not allow" \
        in text
    assert "prio=1000" in text and "firewalled.yaml:30:13" in text  # the flow and its line


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
