"""The load balancer, compiled and walked without a switch: a new connection to the VIP is
DNATed on the client's hypervisor to a member (the select group's heaviest bucket, as the
simulator picks), from the VIP's network and through the router; the member's reply gets
the VIP back on the client's hypervisor; the other tenant's same address is nobody; every
check of the YAML is located; the isolation proof holds with load balancers."""
from ipaddress import ip_address

import pytest
import yaml

from netvirt.config import load_file
from netvirt.errors import ConfigError
from netvirt.inspect.isolation import prove
from netvirt.inspect.trace import TraceRequest, trace
from netvirt.pipeline.layout import REG_AFFINE
from netvirt.pipeline.records import CT, GroupAction, Learn, Resubmit, SetField, origin_id
from netvirt.pipeline.tables import Table
from netvirt.topology.balancer import vip_mac

from .helpers import ROOT_EXAMPLES, compile_all, load_data, matches_golden

BALANCED = ROOT_EXAMPLES / "balanced.yaml"
VIP = "10.0.0.100"


@pytest.fixture(scope="module")
def lab():
    return compile_all(load_file(BALANCED))


def _at(topo, inv, name):
    ref = topo.port(*name.split("/"))
    return ref, (ref.port.hypervisor, inv[ref.port.hypervisor].ofports[ref.port.interface])


def _tcp(src, eth_dst, dst_ip, dport, sport=40000, flags=0x02):
    return {"eth_src": src.port.mac, "eth_dst": eth_dst, "eth_type": 0x0800,
            "ipv4_src": str(src.port.ips[0]), "ipv4_dst": dst_ip, "ip_proto": 6, "nw_ttl": 64,
            "tcp_src": sport, "tcp_dst": dport, "tcp_flags": flags}


@pytest.mark.parametrize("hv", ["hv1", "hv2", "hv3"])
def test_balanced_pipeline_matches_golden(lab, hv):
    assert matches_golden(lab[2][hv].dump(), f"balanced-{hv}")


def test_the_vip_is_answered_where_its_network_is_and_dnats_to_a_member_there(lab):
    topo, inv, per_hv, net = lab
    client, at = _at(topo, inv, "blue/client")  # hv1
    mac = vip_mac("blue", "www")
    arp = {"eth_src": client.port.mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
           "arp_op": 1, "arp_sha": client.port.mac, "arp_spa": "10.0.0.10", "arp_tpa": VIP}
    (_, _, answer), = net.inject(*at, arp).delivered
    assert dict(answer)["arp_sha"] == mac and dict(answer)["arp_op"] == 2
    res = net.fresh().inject(*at, _tcp(client, mac, VIP, 80))
    web3, web3_at = _at(topo, inv, "blue/web3")  # weight 2: the heaviest bucket
    (hv, port, pkt), = res.delivered
    pkt = dict(pkt)
    assert (hv, port) == web3_at
    assert (pkt["eth_dst"], pkt["ipv4_dst"], pkt["tcp_dst"]) == (web3.port.mac, "10.0.0.3", 8080)
    assert pkt["ipv4_src"] == "10.0.0.10"  # the client's own address: the member sees it


def test_replies_get_the_vip_back_and_a_connection_keeps_its_member(lab):
    topo, inv, per_hv, net = lab
    net = net.fresh()
    client, at = _at(topo, inv, "blue/client")
    web3, web3_at = _at(topo, inv, "blue/web3")
    net.inject(*at, _tcp(client, vip_mac("blue", "www"), VIP, 80))
    reply = _tcp(web3, client.port.mac, "10.0.0.10", 40000, sport=8080, flags=0x12)
    (hv, port, pkt), = net.inject(*web3_at, reply).delivered
    pkt = dict(pkt)
    assert (hv, port) == at
    assert (pkt["ipv4_src"], pkt["tcp_src"]) == (VIP, 80)  # undone on the client's hypervisor
    more = net.inject(*at, _tcp(client, vip_mac("blue", "www"), VIP, 80, flags=0x10))
    assert more.ports() == {web3_at}  # the same member, by the connection's DNAT


def test_a_client_behind_the_router_reaches_a_member_and_gets_the_vip_back(lab):
    topo, inv, per_hv, net = lab
    net = net.fresh()
    laptop, at = _at(topo, inv, "blue/laptop")  # office network, hv2
    gw = next(i for i in topo.router_of("blue", "office").interfaces if i.network.name == "office")
    res = net.inject(*at, _tcp(laptop, gw.mac, VIP, 80))
    web3, web3_at = _at(topo, inv, "blue/web3")
    assert res.ports() == {web3_at}
    web_gw = next(i for i in topo.router_of("blue", "web").interfaces if i.network.name == "web")
    reply = _tcp(web3, web_gw.mac, "10.2.0.5", 40000, sport=8080, flags=0x12)
    (hv, port, pkt), = net.inject(*web3_at, reply).delivered
    assert (hv, port) == at and (dict(pkt)["ipv4_src"], dict(pkt)["tcp_src"]) == (VIP, 80)


def test_the_vip_takes_only_its_protocol_and_port_and_red_has_no_vip(lab):
    topo, inv, per_hv, net = lab
    client, at = _at(topo, inv, "blue/client")
    mac = vip_mac("blue", "www")
    assert net.fresh().inject(*at, _tcp(client, mac, VIP, 22)).ports() == set()
    red, red_at = _at(topo, inv, "red/client")
    res = net.fresh().inject(*red_at, _tcp(red, mac, VIP, 80))
    # an unknown MAC in red: flooded to red's own ports, untranslated, never to blue's
    assert res.ports() == {_at(topo, inv, "red/web1")[1]}
    assert all(dict(pkt)["ipv4_dst"] == VIP for _, _, pkt in res.delivered)


def test_the_isolation_proof_holds_with_a_load_balancer(lab):
    topo, inv, per_hv, _ = lab
    assert prove(topo, per_hv, inv) == []


SHOP = "10.0.0.101"  # blue's source-affinity VIP, port 443 -> 8443


def test_each_member_of_an_affinity_vip_is_learned_for_the_client_it_is_given(lab):
    topo, inv, per_hv, net = lab
    d = per_hv["hv1"]
    (via,) = [f for f in d.flows if f.table == Table.LB_AFFINE and f.priority == 90]
    (group,) = [g for g in d.groups if GroupAction(g.group_id) in via.actions]
    # a bucket names its member and comes back; the member's flow learns and DNATs
    assert {b for b in group.buckets} == {
        (SetField(REG_AFFINE, int(ip_address(ip))), Resubmit(Table.LB_AFFINE))
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")}
    members = [f for f in d.flows if f.table == Table.LB_AFFINE and f.priority == 100]
    assert len(members) == 3
    for f in members:
        learn, dnat = f.actions
        assert isinstance(learn, Learn) and isinstance(dnat, CT)
        assert learn.table == Table.LB_AFFINITY and learn.idle_timeout == 600
        # keyed on who calls which VIP, in which network; not on the client's port
        assert learn.matches == (("eth_type", 16, 0x800), ("ip_proto", 8, 6),
                                 ("metadata", 24, None), ("ipv4_src", 32, None),
                                 ("ipv4_dst", 32, int(ip_address(SHOP))), ("tcp_dst", 16, 443))
        assert learn.loads == ((REG_AFFINE, 32, dict(f.match)[REG_AFFINE]),)
        assert dict(f.match)[REG_AFFINE] == int(ip_address(dnat.nat.ip_min))
        # the member's origin: its affinities go with its flow (OVS's delete_learned)
        assert learn.cookie >> 32 == origin_id(f.origin) and "/member/" in f.origin


def test_a_client_with_a_learned_member_gets_it_and_one_without_gets_the_group(lab):
    topo, inv, per_hv, net = lab
    client, at = _at(topo, inv, "blue/client")
    web1, web1_at = _at(topo, inv, "blue/web1")
    web3, web3_at = _at(topo, inv, "blue/web3")
    first = net.fresh().inject(*at, _tcp(client, vip_mac("blue", "www"), SHOP, 443))
    assert first.ports() == {web3_at}  # nothing learned: the group's heaviest bucket
    looked = [s for s in first.steps if s.table == Table.LB_AFFINITY]
    assert looked and not any(s.table == Table.LB_AFFINITY for s in first.dropped_at)
    # what web1's learned flow loads: the client's connection goes to web1, at its port
    pkt = {**_tcp(client, vip_mac("blue", "www"), SHOP, 443), REG_AFFINE: int(ip_address("10.0.0.1"))}
    (hv, port, out), = net.fresh().inject(*at, pkt).delivered
    assert (hv, port) == web1_at and dict(out)["tcp_dst"] == 8443
    assert dict(out)["eth_dst"] == web1.port.mac


def test_an_affinity_to_a_member_that_takes_no_connections_is_not_honoured():
    data = yaml.safe_load(BALANCED.read_text())
    data["tenants"][0]["load_balancers"][1]["members"][0]["weight"] = 0  # web1 drains
    topo, inv, per_hv, net = compile_all(load_data(data, "drain.yaml"))
    client, at = _at(topo, inv, "blue/client")
    _, web3_at = _at(topo, inv, "blue/web3")
    pkt = {**_tcp(client, vip_mac("blue", "www"), SHOP, 443), REG_AFFINE: int(ip_address("10.0.0.1"))}
    assert net.inject(*at, pkt).ports() == {web3_at}  # the group again, which learns anew


def _errors(mutate) -> list[str]:
    data = yaml.safe_load(BALANCED.read_text())
    mutate(data["tenants"][0]["load_balancers"][0], data)
    with pytest.raises(ConfigError) as e:
        load_data(data, "lb.yaml")
    return [str(d) for d in e.value.diagnostics]


@pytest.mark.parametrize("mutate, where, says", [
    (lambda lb, d: lb["vip"].update(ip="10.0.0.2"), "load_balancers[0].vip.ip",
     "VIP 10.0.0.2 is already port 'web2''s address"),
    (lambda lb, d: lb["vip"].update(ip="10.9.0.1"), "load_balancers[0].vip.ip",
     "outside network 'web'"),
    (lambda lb, d: lb["members"][0].update(port="app9"), "members[0].port",
     "port 'app9' is not a port of tenant 'blue'"),
    (lambda lb, d: d["tenants"][0]["networks"].append(
        {"name": "lab", "vni": 1009, "subnets": [{"cidr": "10.9.0.0/24"}]})
        or d["tenants"][0]["ports"].append({"name": "pc", "network": "lab", "hypervisor": "hv1",
                                            "ips": ["10.9.0.1"], "mac": "02:00:00:00:01:99"})
        or lb["members"][0].update(port="pc"), "members[0].port",
     "on network 'lab', which no router joins to the VIP's network 'web'"),
    (lambda lb, d: [m.update(weight=0) for m in lb["members"]], "load_balancers[0].members",
     "every member has weight 0"),
    (lambda lb, d: lb.update(network="lan"), "load_balancers[0].network",
     "network 'lan' is not defined"),
    (lambda lb, d: lb.update(health_check={"path": "/healthz"}), "health_check.path",
     "path is for http checks"),
    (lambda lb, d: lb.update(health_check={"type": "http", "path": "healthz"}),
     "health_check.path", "should match pattern"),
    (lambda lb, d: lb.update(health_check={"type": "http", "expect": [700]}),
     "health_check.expect[0]", "less than or equal to 599"),
    (lambda lb, d: lb["vip"].update(protocol="udp") or lb.update(health_check={}),
     "load_balancers[0].health_check", "a udp VIP's members do not answer"),
    (lambda lb, d: lb.update(affinity_timeout=30), "load_balancers[0].affinity_timeout",
     "affinity_timeout is for algorithm source_ip"),
    (lambda lb, d: lb.update(algorithm="round_robin"), "load_balancers[0].algorithm",
     "'hash' or 'source_ip'"),
    (lambda lb, d: lb.update(algorithm="source_ip", affinity_timeout=0),
     "load_balancers[0].affinity_timeout", "greater than or equal to 1"),
])
def test_every_load_balancer_check_is_located(mutate, where, says):
    errors = _errors(mutate)
    assert any(where in e and says in e and e.startswith("lb.yaml:") for e in errors), errors


def test_a_member_of_another_tenant_is_refused():
    errors = _errors(lambda lb, d: lb["members"][0].update(port="client")
                     or d["tenants"][0]["ports"].pop(3))  # blue's client gone: red's remains
    assert any("port 'client' is not a port of tenant 'blue'" in e for e in errors), errors


def test_a_member_that_calls_its_own_vip_and_gets_itself_gets_its_answer_from_the_vip():
    data = yaml.safe_load(BALANCED.read_text())
    data["tenants"][0]["load_balancers"][0]["members"][0]["weight"] = 5  # web1: the heaviest
    topo, inv, per_hv, net = compile_all(load_data(data, "hairpin.yaml"))
    web1, at = _at(topo, inv, "blue/web1")
    (hv, port, pkt), = net.inject(*at, _tcp(web1, vip_mac("blue", "www"), VIP, 80)).delivered
    pkt = dict(pkt)
    assert (hv, port) == at  # back out of the port it came in by
    assert (pkt["ipv4_src"], pkt["ipv4_dst"], pkt["tcp_dst"]) == (VIP, "10.0.0.1", 8080)
    assert pkt["eth_dst"] == web1.port.mac
    reply = {**_tcp(web1, vip_mac("blue", "www"), VIP, pkt["tcp_src"], sport=8080,
                    flags=0x12)}
    (hv, port, back), = net.inject(*at, reply).delivered
    back = dict(back)
    assert (hv, port) == at
    assert (back["ipv4_src"], back["tcp_src"], back["ipv4_dst"], back["tcp_dst"]) == \
        (VIP, 80, "10.0.0.1", 40000)


def test_a_trace_to_an_affinity_vip_names_its_members_and_the_learned_lookup(lab):
    topo, inv, per_hv, net = lab
    r = trace(TraceRequest.from_json({"from": "blue/client", "to_ip": SHOP, "proto": "tcp",
                                      "dst_port": 443}), load_file(BALANCED), topo, net, inv)
    steps = r["packet"]["steps"]
    (lookup,) = [s for s in steps if s["table"] == "LB_AFFINITY"]
    assert lookup["action"] == "return"  # nothing learned in the model: not a drop
    (pick,) = [s for s in steps if s.get("choices")]
    assert {c["to"]: c["weight"] for c in pick["choices"]} == {
        "10.0.0.1:8443": 1, "10.0.0.2:8443": 1, "10.0.0.3:8443": 2}
    assert pick["affinity_timeout"] == 600
    assert r["verdict"].startswith("delivered"), r["verdict"]


def test_a_member_of_two_vips_at_one_port_calls_either_and_gets_that_vip_back():
    """After the DNAT nothing says which VIP a hairpinned call was for: both VIPs SNAT it to
    the lowest of them (one set of flows, not two that claim one packet), and the tenant's
    zone gives the reply the VIP that was called."""
    data = yaml.safe_load(BALANCED.read_text())
    shop = data["tenants"][0]["load_balancers"][1]
    for m in shop["members"]:
        m["target_port"] = 8080  # www's members, at www's port
    shop["members"][0]["weight"] = 5  # web1: the heaviest, so the model gives it itself
    topo, inv, per_hv, net = compile_all(load_data(data, "two-vips.yaml"))
    web1, at = _at(topo, inv, "blue/web1")
    (hv, port, pkt), = net.inject(*at, _tcp(web1, vip_mac("blue", "www"), SHOP, 443)).delivered
    pkt = dict(pkt)
    assert (hv, port) == at and (pkt["ipv4_dst"], pkt["tcp_dst"]) == ("10.0.0.1", 8080)
    assert pkt["ipv4_src"] == VIP  # www's 10.0.0.100 < shop's 10.0.0.101
    reply = _tcp(web1, vip_mac("blue", "www"), VIP, pkt["tcp_src"], sport=8080, flags=0x12)
    (hv, port, back), = net.inject(*at, reply).delivered
    back = dict(back)
    assert (back["ipv4_src"], back["tcp_src"], back["tcp_dst"]) == (SHOP, 443, 40000)


def test_a_member_on_another_network_of_the_router_is_reached_routed_and_answers_as_the_vip():
    """laptop (office, hv2) is a member of a VIP on web: a client on web sends to the VIP's
    MAC and the DNATed packet goes to the router, which routes it to laptop; laptop's reply
    comes back routed and gets the VIP back on the client's hypervisor."""
    data = yaml.safe_load(BALANCED.read_text())
    data["tenants"][0]["load_balancers"][0]["members"] = [
        {"port": "laptop", "target_port": 8080}]
    data["tenants"][0]["load_balancers"][0]["health_check"] = {}
    topo, inv, per_hv, net = compile_all(load_data(data, "off-net.yaml"))
    client, at = _at(topo, inv, "blue/client")  # web, hv1
    laptop, laptop_at = _at(topo, inv, "blue/laptop")  # office, hv2
    (hv, port, pkt), = net.inject(*at, _tcp(client, vip_mac("blue", "www"), VIP, 80)).delivered
    pkt = dict(pkt)
    assert (hv, port) == laptop_at
    assert (pkt["ipv4_dst"], pkt["tcp_dst"], pkt["eth_dst"]) == ("10.2.0.5", 8080, laptop.port.mac)
    assert pkt["ipv4_src"] == "10.0.0.10" and pkt["nw_ttl"] == 63  # routed
    gw = next(i for i in topo.router_of("blue", "office").interfaces if i.network.name == "office")
    reply = _tcp(laptop, gw.mac, "10.0.0.10", 40000, sport=8080, flags=0x12)
    (hv, port, back), = net.inject(*laptop_at, reply).delivered
    back = dict(back)
    assert (hv, port) == at and (back["ipv4_src"], back["tcp_src"]) == (VIP, 80)
    # its health checks' answers, to the VIP through its gateway, reach the controller
    probe_answer = {**_tcp(laptop, gw.mac, VIP, 65100, sport=8080, flags=0x12)}
    assert net.fresh().inject(*laptop_at, probe_answer).to_controller
    # laptop calls the VIP (through its gateway) and is given itself: back to it, from the VIP
    (hv, port, own), = net.fresh().inject(*laptop_at, _tcp(laptop, gw.mac, VIP, 80)).delivered
    own = dict(own)
    assert (hv, port) == laptop_at and (own["ipv4_src"], own["ipv4_dst"]) == (VIP, "10.2.0.5")
    assert prove(topo, per_hv, inv) == []
