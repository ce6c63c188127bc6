"""Allowed address pairs (VRRP-style failover), compiled and walked without a switch: a
port may send from its pair's address and MAC, a request for the pair's address reaches
the ports that may hold it, and nobody else may use it."""
import copy

import yaml

from .helpers import ROOT_EXAMPLES, compile_all, load_data

VIP, VMAC = "10.2.0.100", "00:00:5e:00:01:07"  # a VRRP virtual router's address and MAC


def _lab(web2_hv="hv2"):
    data = yaml.safe_load((ROOT_EXAMPLES / "firewalled.yaml").read_text())
    t = data["tenants"][0]
    t.pop("firewall")
    for p in t["ports"]:
        p.pop("security_groups", None)
    t["ports"][1]["hypervisor"] = web2_hv
    for p in t["ports"][:2]:  # web1 and web2 share the virtual address
        p["allowed_address_pairs"] = [{"ip": VIP, "mac": VMAC}]
    return compile_all(load_data(copy.deepcopy(data)))


def _at(topo, inv, name):
    ref = topo.port("shop", name)
    return ref, (ref.port.hypervisor, inv[ref.port.hypervisor].ofports[ref.port.interface])


def test_a_port_may_send_from_its_pair_and_no_other_port_may():
    topo, inv, _, net = _lab()
    client, client_at = _at(topo, inv, "client")
    for name, allowed in (("web1", True), ("db1", False)):
        src, at = _at(topo, inv, name)
        pkt = {"eth_src": VMAC, "eth_dst": client.port.mac, "eth_type": 0x0800,
               "ipv4_src": VIP, "ipv4_dst": "10.2.0.4", "ip_proto": 17, "udp_src": 112,
               "udp_dst": 112}
        assert (client_at in net.inject(*at, pkt).ports()) is allowed, name


def test_arp_for_the_pair_reaches_the_ports_that_may_hold_it_on_any_hypervisor():
    for web2_hv in ("hv2", "hv1"):  # apart, and both on one hypervisor
        topo, inv, _, net = _lab(web2_hv)
        client, at = _at(topo, inv, "client")
        arp = {"eth_src": client.port.mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
               "arp_op": 1, "arp_sha": client.port.mac, "arp_spa": "10.2.0.4",
               "arp_tpa": VIP}
        reached = net.inject(*at, arp).ports()
        assert {_at(topo, inv, "web1")[1], _at(topo, inv, "web2")[1]} <= reached, web2_hv
    topo, inv, _, net = compile_all(load_data(yaml.safe_load(
        (ROOT_EXAMPLES / "firewalled.yaml").read_text())))  # no pairs: no port takes it
    client, at = _at(topo, inv, "client")
    assert not net.inject(*at, {**arp, "eth_src": client.port.mac}).ports() - {at}


def test_frames_to_the_pair_mac_flood_to_whoever_holds_it_now():
    topo, inv, _, net = _lab()
    client, at = _at(topo, inv, "client")
    pkt = {"eth_src": client.port.mac, "eth_dst": VMAC, "eth_type": 0x0800,
           "ipv4_src": "10.2.0.4", "ipv4_dst": VIP, "ip_proto": 1, "icmpv4_type": 8}
    reached = net.inject(*at, pkt).ports()
    assert {_at(topo, inv, "web1")[1], _at(topo, inv, "web2")[1]} <= reached
