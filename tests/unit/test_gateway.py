"""North-south through a router's gateway hypervisor, walked without a switch: SNAT to the
router's address, floating IPs both ways, replies through the router's own conntrack zone,
the next hop's MAC learned (or asked for), and tenants with the same addresses apart."""
import pytest

from netvirt.config import load_file
from netvirt.inspect.simulate import Network
from netvirt.reconcile.compiler import compile_flows

from .helpers import ROOT_EXAMPLES, sequential_inventory
from netvirt.topology import Topology

EXT_OFPORT = 99
OUTSIDE_MAC = "0e:00:00:00:00:01"  # the external network's gateway, learned by ARP
OUTSIDE = "198.51.100.7"  # a host behind it


def _lab(learned=True):
    lc = load_file(ROOT_EXAMPLES / "routed.yaml")
    topo = Topology(lc.config)
    inv = sequential_inventory(topo)
    ext = lc.config.external_networks[0]
    inv["hv3"] = inv["hv3"].with_port(ext.interface, (EXT_OFPORT, True))
    if learned:
        inv["hv3"] = inv["hv3"].with_neighbours({(ext.vni, str(ext.gateway)): OUTSIDE_MAC})
    per_hv = {hv: compile_flows(topo, hv, inv[hv]) for hv in topo.hypervisors}
    return topo, inv, Network.of_config(per_hv, lc.config)


def _from(topo, inv, name, dst, **extra):
    ref = topo.port(*name.split("/"))
    gw = next(i for i in topo.router_of(ref.tenant, ref.network.name).interfaces
              if i.network.name == ref.network.name)
    at = (ref.port.hypervisor, inv[ref.port.hypervisor].ofports[ref.port.interface])
    pkt = {"eth_src": ref.port.mac, "eth_dst": gw.mac, "eth_type": 0x0800,
           "ipv4_src": str(ref.port.ips[0]), "ipv4_dst": dst, "ip_proto": 6,
           "tcp_src": 40000, "tcp_dst": 80, "tcp_flags": 0x002, "nw_ttl": 64, **extra}
    return at, pkt


def _outside(topo, dst, src=OUTSIDE, **extra):
    r = topo.router_of("blue", "web")
    return {"eth_src": OUTSIDE_MAC, "eth_dst": r.external_mac, "eth_type": 0x0800,
            "ipv4_src": src, "ipv4_dst": dst, "ip_proto": 6, "tcp_src": 80, "tcp_dst": 40000,
            "tcp_flags": 0x012, "nw_ttl": 60, **extra}


def _out(res):
    (hv, port, pkt), = res.delivered
    return hv, port, dict(pkt)


def test_a_port_without_a_floating_ip_goes_out_as_the_routers_address_and_replies_return():
    topo, inv, net = _lab()
    at, pkt = _from(topo, inv, "blue/db1", OUTSIDE)  # db1 is on hv3, the gateway
    hv, port, out = _out(net.inject(*at, pkt))
    r = topo.router_of("blue", "db")
    assert (hv, port) == ("hv3", EXT_OFPORT)
    assert (out["ipv4_src"], out["eth_src"], out["eth_dst"], out["nw_ttl"]) == \
        ("203.0.113.10", r.external_mac, OUTSIDE_MAC, 63)
    reply = net.inject("hv3", EXT_OFPORT, _outside(topo, "203.0.113.10"))
    db1 = topo.port("blue", "db1")
    hv, port, back = _out(reply)
    assert (back["ipv4_dst"], back["eth_dst"]) == ("10.1.0.1", db1.port.mac)
    assert (hv, port) == ("hv3", inv["hv3"].ofports[db1.port.interface])


def test_the_way_out_from_another_hypervisor_crosses_the_tunnel_once_under_the_routers_key():
    topo, inv, net = _lab()
    at, pkt = _from(topo, inv, "red/db1", OUTSIDE)  # hv2
    res = net.inject(*at, pkt)
    hv, port, out = _out(res)
    assert (hv, port, out["ipv4_src"]) == ("hv3", EXT_OFPORT, "203.0.113.11")  # red's own
    assert res.tunneled == [("hv2", "192.168.50.3")]


def test_a_floating_ip_is_the_ports_address_outside_both_ways_and_only_its():
    topo, inv, net = _lab()
    at, pkt = _from(topo, inv, "blue/web1", OUTSIDE)  # hv1, with 203.0.113.20
    assert _out(net.inject(*at, pkt))[2]["ipv4_src"] == "203.0.113.20"
    web1 = topo.port("blue", "web1")
    inbound = _outside(topo, "203.0.113.20", tcp_src=5555, tcp_dst=22, tcp_flags=0x002)
    hv, port, got = _out(net.inject("hv3", EXT_OFPORT, inbound))
    assert (hv, port) == ("hv1", inv["hv1"].ofports[web1.port.interface])
    assert (got["ipv4_dst"], got["eth_dst"]) == ("10.0.0.1", web1.port.mac)
    # red's web1 has the same address and no floating IP: nothing from outside reaches it
    for dst in ("203.0.113.11", "203.0.113.10", "203.0.113.99"):
        res = net.inject("hv3", EXT_OFPORT, _outside(topo, dst, tcp_src=5556, tcp_dst=22,
                                                     tcp_flags=0x002))
        assert not res.delivered, (dst, res.steps)


def test_the_outside_may_ping_the_routers_address_and_ask_for_it_and_the_floating_ip():
    topo, inv, net = _lab()
    r = topo.router_of("blue", "web")
    echo = {**_outside(topo, "203.0.113.10"), "ip_proto": 1, "icmpv4_type": 8}
    hv, port, pong = _out(net.inject("hv3", EXT_OFPORT, echo))
    assert (hv, port, pong["ipv4_src"], pong["icmpv4_type"]) == \
        ("hv3", EXT_OFPORT, "203.0.113.10", 0)
    for ip in ("203.0.113.10", "203.0.113.20"):
        ask = {"eth_src": OUTSIDE_MAC, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
               "arp_op": 1, "arp_sha": OUTSIDE_MAC, "arp_spa": "203.0.113.1", "arp_tpa": ip}
        hv, port, answer = _out(net.inject("hv3", EXT_OFPORT, ask))
        assert (answer["arp_op"], answer["arp_sha"], answer["arp_spa"]) == \
            (2, r.external_mac, ip)


def test_a_next_hop_not_learned_yet_goes_to_the_controller_and_so_do_arp_replies():
    topo, inv, net = _lab(learned=False)
    at, pkt = _from(topo, inv, "blue/db1", OUTSIDE)
    res = net.inject(*at, pkt)
    assert not res.delivered and [hv for hv, _ in res.to_controller] == ["hv3"]
    reply = {"eth_src": OUTSIDE_MAC, "eth_dst": topo.router_of("blue", "web").external_mac,
             "eth_type": 0x0806, "arp_op": 2, "arp_sha": OUTSIDE_MAC,
             "arp_spa": "203.0.113.1", "arp_tpa": "203.0.113.10"}
    assert net.inject("hv3", EXT_OFPORT, reply).to_controller


@pytest.mark.parametrize("name", ["blue/web1", "red/web1"])
def test_tenants_never_reach_each_other_through_the_outside(name):
    """From inside, another tenant's external addresses are outside addresses: the packet
    leaves by the external port, translated, and comes back in only as outside traffic."""
    topo, inv, net = _lab()
    for dst in ("203.0.113.10", "203.0.113.11", "203.0.113.20"):
        at, pkt = _from(topo, inv, name, dst)
        res = net.inject(*at, pkt)
        assert {(hv, p) for hv, p, _ in res.delivered} <= {("hv3", EXT_OFPORT)}, res.steps


def test_a_learned_mac_is_kept_in_ovsdb_and_a_restart_sends_nothing():
    from netvirt.reconcile.agent import HypervisorAgent
    from netvirt.testing.fakes import FakeSwitch

    lc = load_file(ROOT_EXAMPLES / "routed.yaml")

    class Service:
        def __init__(self):
            self.topo = Topology(lc.config)

        def snapshot(self):
            return 1, lc, self.topo

        def notify(self):
            pass

    service = Service()
    ext = lc.config.external_networks[0]
    ofports = dict(sequential_inventory(service.topo)["hv3"].ofports)
    sw = FakeSwitch({**ofports, ext.interface: EXT_OFPORT})

    def agent():
        a = HypervisorAgent("hv3", service, audit_interval=60, ovsdb_factory=lambda ep: sw.ovsdb)
        a.attach(sw)
        a.reconcile_once()
        return a

    a = agent()
    before = sw.flow_mods_sent
    a.learned({(ext.vni, "203.0.113.1"): OUTSIDE_MAC})
    a.reconcile_once()
    assert sw.flow_mods_sent == before + 1 and a.status.in_sync  # one L3_RESOLVE flow
    assert sw.ovsdb.neighbours == {(ext.vni, "203.0.113.1"): OUTSIDE_MAC}
    fresh = agent()  # a new controller: reads the MAC back from OVSDB before compiling
    assert sw.flow_mods_sent == before + 1 and fresh.status.in_sync
