"""DHCP through the packet-in path: the stage's flows, the answers (decoded by scapy, an
encoder that is not ours), and the limits that keep a flooding VM in its place."""
import yaml
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from netvirt.controller.packet_in import PacketIns, Punt
from netvirt.pipeline.tables import Table
from netvirt.drivers import packets
from netvirt.inspect.simulate import Network
from netvirt.nfv import dhcp
from netvirt.reconcile.compiler import compile_flows
from netvirt.topology import Topology

from .helpers import ROOT_EXAMPLES, load_data, sequential_inventory

MAC = "02:00:00:00:01:01"  # blue/web1 in the demo


def _demo(dhcp_on=True):
    data = yaml.safe_load((ROOT_EXAMPLES / "demo.yaml").read_text())
    net = data["tenants"][0]["networks"][0]
    net["dhcp"] = dhcp_on
    net["subnets"][0]["gateway"] = "10.0.0.254"
    lc = load_data(data)
    topo = Topology(lc.config)
    return lc, topo, sequential_inventory(topo)


def _discover(kind="discover", mac=MAC, **bootp):
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                 / UDP(sport=68, dport=67)
                 / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=0x1234, **bootp)
                 / DHCP(options=[("message-type", kind), "end"]))


def test_a_dhcp_request_from_a_port_without_an_address_reaches_the_controller_only():
    lc, topo, inv = _demo()
    per_hv = {hv: compile_flows(topo, hv, inv[hv]) for hv in topo.hypervisors}
    net = Network.of_config(per_hv, lc.config)
    req = {"eth_src": MAC, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x800,
           "ipv4_src": "0.0.0.0", "ipv4_dst": "255.255.255.255", "ip_proto": 17,
           "udp_src": 68, "udp_dst": 67}
    res = net.inject("hv1", inv["hv1"].ofports["tap2544c6b57b"], req)
    assert [hv for hv, _ in res.to_controller] == ["hv1"] and not res.delivered
    assert [s.table for s in res.steps] == [Table.CLASSIFY, Table.PORT_SECURITY, Table.DHCP]
    spoofed = net.inject("hv1", inv["hv1"].ofports["tap2544c6b57b"], {**req, "eth_src": "02:00:00:00:09:09"})
    assert not spoofed.to_controller  # only with the port's own MAC
    _, topo_off, inv_off = _demo(dhcp_on=False)
    off = compile_flows(topo_off, "hv1", inv_off["hv1"])
    assert not [f for f in off.flows if f.table == Table.DHCP and f.priority]


def _lease_and_port():
    lc, topo, inv = _demo()
    port = topo.port("blue", "web1")
    return dhcp.lease_of(port), port, inv


def test_discover_gets_an_offer_of_the_configured_address_with_gateway_and_mtu():
    lease, _, _ = _lease_and_port()
    req = packets.dhcp_request(_discover())
    assert req is not None and req.msg_type == dhcp.DISCOVER and req.client_mac == MAC
    reply = Ether(packets.dhcp_answer(dhcp.answer(req, lease)))
    opts = {o[0]: o[1] for o in reply[DHCP].options if isinstance(o, tuple)}
    assert reply[BOOTP].yiaddr == "10.0.0.1" and reply[BOOTP].xid == 0x1234
    assert opts["message-type"] == 2 and opts["router"] == "10.0.0.254"
    assert opts["subnet_mask"] == "255.255.255.0" and opts["interface-mtu"] == 1450
    assert opts["server_id"] == "10.0.0.254" and opts["lease_time"] == dhcp.LEASE_SECONDS
    assert reply[Ether].dst == MAC and reply[Ether].src == lease.server_mac
    assert reply[UDP].sport == 67 and reply[UDP].dport == 68


def test_a_request_for_the_port_address_is_acked_and_for_another_nacked():
    lease, _, _ = _lease_and_port()
    ok = dhcp.answer(dhcp.Request(dhcp.REQUEST, 1, MAC, requested_ip="10.0.0.1"), lease)
    assert ok.msg_type == dhcp.ACK and ok.yiaddr == "10.0.0.1"
    no = dhcp.answer(dhcp.Request(dhcp.REQUEST, 1, MAC, requested_ip="10.0.0.77"), lease)
    assert no.msg_type == dhcp.NAK and no.dst_ip == "255.255.255.255"
    assert dhcp.answer(dhcp.Request(dhcp.RELEASE, 1, MAC), lease) is None


class Switch:
    def __init__(self):
        self.sent = []

    def packet_out(self, port, data):
        self.sent.append((port, data))


class Service:
    def __init__(self, port):
        self.port = port

    def port_at(self, hv, ofport):
        return self.port if ofport == 1 else None

    def router_interface(self, vni):
        return None  # the demo's networks have no router


def _punt(in_port: int, data: bytes) -> Punt:
    return Punt(in_port, Table.DHCP, 0, data)


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_a_flooding_port_is_held_to_its_share_and_others_still_get_through():
    _, port, _ = _lease_and_port()
    clock = Clock()
    p = PacketIns(Service(port), clock=clock, per_switch=(100.0, 50), per_port=(10.0, 10))
    frame = _discover()
    flood = sum(p.receive("hv1", None, _punt(1, frame)) for _ in range(1000))  # one instant
    assert flood == 10  # its burst, no more
    assert p.receive("hv1", None, _punt(2, frame)), "another port of that switch gets through"
    clock.now += 1.0
    assert sum(p.receive("hv1", None, _punt(1, frame)) for _ in range(1000)) == 10  # its rate
    assert p.counts[("hv1", "limited_port")] == 1980


def test_the_worker_answers_the_port_that_asked_and_nobody_else():
    _, port, _ = _lease_and_port()
    p, sw = PacketIns(Service(port)), Switch()
    assert p.handle("hv1", sw, _punt(1, _discover())) == "answered"
    assert sw.sent[0][0] == 1 and Ether(sw.sent[0][1])[BOOTP].yiaddr == "10.0.0.1"
    assert p.handle("hv1", sw, _punt(1, _discover(mac="02:00:00:00:09:09"))) == "not_ours"
    assert p.handle("hv1", sw, _punt(7, _discover())) == "not_ours"
    assert p.handle("hv1", sw, _punt(1, b"\x00" * 20)) == "not_understood"
    assert len(sw.sent) == 1
