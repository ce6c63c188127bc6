"""The distributed router, compiled and walked without a switch: routed where a packet
enters, TTL decremented once, MACs rewritten, the router's own addresses answered, an
expiring TTL sent to the controller; and every check of the router's YAML, located."""

import pytest
import yaml
from scapy.all import ICMP, IP, UDP, Ether, IPerror, UDPerror

from netvirt.config import load_file
from netvirt.drivers import packets
from netvirt.errors import ConfigError
from netvirt.pipeline.tables import Table

from .helpers import ROOT_EXAMPLES, compile_all, load_data, matches_golden

ROUTED = ROOT_EXAMPLES / "routed.yaml"


@pytest.fixture(scope="module")
def lab():
    lc = load_file(ROUTED)
    topo, inv, per_hv, net = compile_all(lc)
    return topo, inv, per_hv, net


def _at(topo, inv, name):
    ref = topo.port(*name.split("/"))
    return ref, (ref.port.hypervisor, inv[ref.port.hypervisor].ofports[ref.port.interface])


def _to_gateway(topo, src, dst_ip, **extra):
    gw = next(i for i in topo.router_of(src.tenant, src.network.name).interfaces
              if i.network.name == src.network.name)
    return {"eth_src": src.port.mac, "eth_dst": gw.mac, "eth_type": 0x0800,
            "ipv4_src": str(src.port.ips[0]), "ipv4_dst": dst_ip, "ip_proto": 1,
            "icmpv4_type": 8, "nw_ttl": 64, **extra}


@pytest.mark.parametrize("hv", ["hv1", "hv2", "hv3"])
def test_routed_pipeline_matches_golden(lab, hv):
    assert matches_golden(lab[2][hv].dump(), f"routed-{hv}")


def test_a_packet_between_subnets_is_routed_where_it_enters_straight_to_its_port(lab):
    topo, inv, _, net = lab
    src, at = _at(topo, inv, "blue/web1")  # hv1
    dst, dst_at = _at(topo, inv, "blue/db1")  # hv3
    res = net.inject(*at, _to_gateway(topo, src, "10.1.0.1"))
    assert res.ports() == {dst_at}
    (_, _, pkt), = res.delivered
    pkt = dict(pkt)
    db_iface = next(i for i in topo.router_of("blue", "db").interfaces if i.network.name == "db")
    assert (pkt["eth_src"], pkt["eth_dst"], pkt["nw_ttl"]) == (db_iface.mac, dst.port.mac, 63)
    assert res.tunneled == [("hv1", "192.168.50.3")]  # one tunnel, to the port's hypervisor
    routed_on = {s.hv for s in res.steps if s.table == Table.L3_ROUTE}
    assert routed_on == {"hv1"}


def test_the_router_answers_ping_to_each_of_its_addresses_on_the_spot(lab):
    topo, inv, _, net = lab
    src, at = _at(topo, inv, "blue/web1")
    for router_ip in ("10.0.0.254", "10.1.0.254"):
        res = net.inject(*at, _to_gateway(topo, src, router_ip))
        (_, _, pkt), = res.delivered
        pkt = dict(pkt)
        assert res.ports() == {at} and not res.tunneled
        assert (pkt["ipv4_src"], pkt["ipv4_dst"], pkt["icmpv4_type"]) == \
            (router_ip, "10.0.0.1", 0)


def test_a_ttl_that_would_run_out_goes_to_the_controller(lab):
    topo, inv, _, net = lab
    src, at = _at(topo, inv, "blue/web1")
    res = net.inject(*at, _to_gateway(topo, src, "10.1.0.1", nw_ttl=1))
    assert not res.delivered and [hv for hv, _ in res.to_controller] == ["hv1"]


def test_two_tenants_with_the_same_subnets_and_routers_never_meet(lab):
    topo, inv, _, net = lab
    ports = [topo.port(t.name, p.name) for t in topo.config.tenants for p in t.ports]
    routers = [i.mac for t in ("blue", "red") for n in ("web", "db")
               for i in topo.router_of(t, n).interfaces if i.network.name == n]
    for s in ports:
        _, at = _at(topo, inv, f"{s.tenant}/{s.port.name}")
        for d in ports:
            if d is s:
                continue
            _, dst_at = _at(topo, inv, f"{d.tenant}/{d.port.name}")
            for gw in routers:  # every router MAC, another tenant's too
                pkt = {**_to_gateway(topo, s, str(d.port.ips[0])), "eth_dst": gw}
                got = net.inject(*at, pkt).ports()
                mine = {_at(topo, inv, f"{p.tenant}/{p.port.name}")[1] for p in ports
                        if p.tenant == s.tenant}
                assert got <= mine, (s.origin, d.origin, gw)
                if d.tenant == s.tenant and d.network.name != s.network.name and \
                        gw in [i.mac for i in topo.router_of(s.tenant, s.network.name).interfaces
                               if i.network.name == s.network.name]:
                    assert got == {dst_at}


def test_a_static_route_goes_to_its_next_hop_port():
    data = yaml.safe_load(ROUTED.read_text())
    data["tenants"][0]["routers"][0]["routes"] = [
        {"destination": "172.16.0.0/16", "next_hop": "10.1.0.1"}]
    topo, inv, _, net = compile_all(load_data(data))
    src, at = _at(topo, inv, "blue/web1")
    hop, hop_at = _at(topo, inv, "blue/db1")
    res = net.inject(*at, _to_gateway(topo, src, "172.16.5.5"))
    (_, _, pkt), = res.delivered
    assert res.ports() == {hop_at} and dict(pkt)["eth_dst"] == hop.port.mac
    assert dict(pkt)["ipv4_dst"] == "172.16.5.5"  # routed, not rewritten
    assert not net.inject(*at, _to_gateway(topo, src, "192.0.2.1")).delivered  # no route


def test_time_exceeded_quotes_the_packet_and_goes_back_to_its_sender():
    sent = (Ether(src="02:00:00:00:01:01", dst="06:00:00:00:00:01") /
            IP(src="10.0.0.1", dst="10.1.0.1", ttl=1) / UDP(sport=33434, dport=33435) / (b"x" * 20))
    frame = Ether(packets.time_exceeded(bytes(sent), "06:00:00:00:00:01", "10.0.0.254"))
    assert (frame.dst, frame.src) == ("02:00:00:00:01:01", "06:00:00:00:00:01")
    assert (frame[IP].src, frame[IP].dst, frame[ICMP].type, frame[ICMP].code) == \
        ("10.0.0.254", "10.0.0.1", 11, 0)
    assert frame[IPerror].dst == "10.1.0.1" and frame[UDPerror].dport == 33435
    assert packets.time_exceeded(bytes(Ether() / IP() / ICMP(type=3)), "06:00:00:00:00:01",
                                 "10.0.0.254") is None  # never about an ICMP error


def _routed(change):
    data = yaml.safe_load(ROUTED.read_text())
    change(data)
    return data


def _blue_router(d):
    return d["tenants"][0]["routers"][0]


EXT = {"name": "internet", "cidr": "203.0.113.0/24", "gateway": "203.0.113.1",
       "hypervisors": ["hv1"], "interface": "ext0"}


@pytest.mark.parametrize("change, where, why", [
    (lambda d: _blue_router(d)["interfaces"].append({"network": "nope"}),
     "routers[0].interfaces[2].network", "'nope' is not defined in tenant 'blue'"),
    (lambda d: d["tenants"][0]["networks"].pop(1) and
     _blue_router(d)["interfaces"].__setitem__(1, {"network": "db"}),
     "routers[0].interfaces[1].network", "is tenant 'red''s"),
    (lambda d: _blue_router(d)["interfaces"].append({"network": "web"}),
     "routers[0].interfaces[2].network", "already has an interface on network 'web'"),
    (lambda d: d["tenants"][0]["routers"].append({"name": "two", "interfaces": [
        {"network": "web", "ip": "10.0.0.253"}]}),
     "routers[1].interfaces[0].network", "already has router 'edge''s interface"),
    (lambda d: _blue_router(d)["interfaces"][0].update(ip="10.9.0.1"),
     "routers[0].interfaces[0].ip", "outside network 'web''s subnets"),
    (lambda d: _blue_router(d)["interfaces"][0].update(ip="10.0.0.1"),
     "routers[0].interfaces[0].ip", "port 'web1''s address"),
    (lambda d: d["tenants"][0]["networks"][0]["subnets"][0].pop("gateway"),
     "routers[0].interfaces[0]", "no single subnet with a gateway"),
    (lambda d: _blue_router(d).update(routes=[{"destination": "172.16.0.0/16",
                                                "next_hop": "192.168.9.9"}]),
     "routers[0].routes[0].next_hop", "no interface reaches it"),
    (lambda d: _blue_router(d).update(routes=[{"destination": "172.16.0.0/16",
                                                "next_hop": "10.1.0.77"}]),
     "routers[0].routes[0].next_hop", "is no port's address"),
    (lambda d: _blue_router(d).update(routes=[{"destination": "10.1.0.128/25",
                                                "next_hop": "10.1.0.1"}]),
     "routers[0].routes[0].destination", "would never be used"),
    (lambda d: _blue_router(d).update(external_gateway={"network": "nope", "ip": "1.2.3.4"}),
     "routers[0].external_gateway.network", "'nope' is not defined"),
    (lambda d: d.update(external_networks=[EXT]) or _blue_router(d).update(
        external_gateway={"network": "internet", "ip": "198.51.100.7"}),
     "routers[0].external_gateway.ip", "outside 203.0.113.0/24"),
    (lambda d: d.update(external_networks=[EXT]) or [r.update(external_gateway={
        "network": "internet", "ip": "203.0.113.10"}) for t in d["tenants"]
        for r in t["routers"]],
     "tenants[1].routers[0].external_gateway.ip", "already router blue/edge"),
    (lambda d: d.update(external_networks=[EXT]) or _blue_router(d).update(
        external_gateway={"network": "internet", "ip": "203.0.113.10"},
        routes=[{"destination": "0.0.0.0/0", "next_hop": "10.1.0.1"}]),
     "routers[0].routes[0].destination", "is its default route"),
    (lambda d: _blue_router(d).pop("external_gateway") and d["tenants"][0].update(
        floating_ips=[{"ip": "203.0.113.20", "port": "web1"}]),
     "floating_ips[0]", "has no router with an external_gateway"),
    (lambda d: d.update(external_networks=[EXT]) or _blue_router(d).update(
        external_gateway={"network": "internet", "ip": "203.0.113.10"}) or
     d["tenants"][0].update(floating_ips=[{"ip": "198.51.100.20", "port": "web1"}]),
     "floating_ips[0].ip", "outside 203.0.113.0/24"),
    (lambda d: d.update(external_networks=[EXT]) or _blue_router(d).update(
        external_gateway={"network": "internet", "ip": "203.0.113.10"}) or
     d["tenants"][0].update(floating_ips=[{"ip": "203.0.113.20", "port": "web1"},
                                         {"ip": "203.0.113.20", "port": "web2"}]),
     "floating_ips[1].ip", "is already floating IP of blue/web1"),
    (lambda d: d.update(external_networks=[EXT]) or _blue_router(d).update(
        external_gateway={"network": "internet", "ip": "203.0.113.10"}) or
     d["tenants"][0].update(floating_ips=[{"ip": "203.0.113.10", "port": "web1"}]),
     "floating_ips[0].ip", "is already router blue/edge"),
    (lambda d: d.update(external_networks=[{**EXT, "gateway": "198.51.100.1"}]),
     "external_networks[0].gateway", "outside 203.0.113.0/24"),
    (lambda d: d.update(external_networks=[{**EXT, "hypervisors": ["hv9"]}]),
     "external_networks[0].hypervisors[0]", "'hv9' is not defined"),
])
def test_every_routing_check_names_its_place(change, where, why):
    with pytest.raises(ConfigError) as e:
        load_data(_routed(change))
    text = str(e.value)
    assert why in text and where in text, text
