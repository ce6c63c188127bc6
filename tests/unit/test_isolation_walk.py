"""Walk packets through the compiled flows of generated configs (hypothesis): tenants with
overlapping subnets never reach each other, spoofed sources are dropped, and inside a
network unicast, ARP and broadcast behave."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netvirt.pipeline.tables import Table

from .helpers import compile_all, load_data

BCAST = "ff:ff:ff:ff:ff:ff"


@st.composite
def configs(draw):
    n_hv = draw(st.integers(1, 4))
    hvs = [{"name": f"hv{i + 1}", "underlay_ip": f"192.168.50.{i + 1}/24",
            "ovsdb": f"unix:/run/hv{i + 1}/db.sock"} for i in range(n_hv)]
    tenants = []
    for t in range(draw(st.integers(2, 3))):
        n_ports = draw(st.integers(1, 5))
        # every tenant draws from the same small pool: overlapping IPs across tenants
        hosts = draw(st.lists(st.integers(1, 8), min_size=n_ports, max_size=n_ports, unique=True))
        ports = [{"name": f"p{i}", "network": "net", "ips": [f"10.0.0.{h}"],
                  "hypervisor": f"hv{draw(st.integers(1, n_hv))}"} for i, h in enumerate(hosts)]
        tenants.append({"name": f"t{t}", "networks": [{"name": "net", "subnets": [
            {"cidr": "10.0.0.0/24"}]}], "ports": ports})
    return {"controller": {"openflow": "tcp:172.30.0.1:6653"}, "hypervisors": hvs,
            "tenants": tenants}


def _setup(data):
    lc = load_data(data)
    topo, inv, _, net = compile_all(lc)
    ports = [topo.port(t.name, p.name) for t in lc.config.tenants for p in t.ports]
    where = {r.origin: (r.port.hypervisor, inv[r.port.hypervisor].ofports[r.port.interface])
             for r in ports}
    return net, ports, where


def _ip_packet(src, dst_mac, dst_ip):
    return {"eth_src": src.port.mac, "eth_dst": dst_mac, "eth_type": 0x0800,
            "ipv4_src": str(src.port.ips[0]), "ipv4_dst": dst_ip}


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(configs())
def test_unicast_reaches_exactly_the_owner_inside_the_tenant(data):
    net, ports, where = _setup(data)
    for s in ports:
        for d in ports:
            if s is d:
                continue
            res = net.inject(*where[s.origin], _ip_packet(s, d.port.mac, str(d.port.ips[0])))
            if s.tenant == d.tenant:
                assert res.ports() == {where[d.origin]}, (s.origin, d.origin, res.steps)
            else:
                # another tenant's MAC is unknown in this network: flooded, but only to the
                # source tenant's own ports
                own = {where[p.origin] for p in ports if p.tenant == s.tenant}
                assert res.ports() <= own - {where[s.origin]}, (s.origin, d.origin)


@SETTINGS
@given(configs())
def test_broadcast_stays_inside_the_network(data):
    net, ports, where = _setup(data)
    for s in ports:
        res = net.inject(*where[s.origin], _ip_packet(s, BCAST, "10.0.0.255"))
        same = {where[p.origin] for p in ports if p.tenant == s.tenant and p is not s}
        assert res.ports() == same, (s.origin, res.steps)


def _arp_request(src, target_ip):
    return {"eth_src": src.port.mac, "eth_dst": BCAST, "eth_type": 0x0806, "arp_op": 1,
            "arp_sha": src.port.mac, "arp_spa": str(src.port.ips[0]), "arp_tpa": target_ip}


@SETTINGS
@given(configs())
def test_arp_is_answered_by_the_owners_hypervisor_and_stays_off_other_guests(data):
    net, ports, where = _setup(data)
    for s in ports:
        src = where[s.origin]
        for d in ports:
            if s is d or d.tenant != s.tenant:
                continue
            res = net.inject(*src, _arp_request(s, str(d.port.ips[0])))
            replies = [(hv, port, dict(p)) for hv, port, p in res.delivered
                       if dict(p)["arp_op"] == 2]
            assert [(hv, port) for hv, port, _ in replies] == [src], res.steps
            reply = replies[0][2]
            assert (reply["arp_sha"], reply["arp_spa"], reply["eth_src"]) == \
                (d.port.mac, str(d.port.ips[0]), d.port.mac)
            assert (reply["eth_dst"], reply["arp_tha"], reply["arp_tpa"]) == \
                (s.port.mac, s.port.mac, str(s.port.ips[0]))
            seen_request = {(hv, port) for hv, port, p in res.delivered if dict(p)["arp_op"] == 1}
            if d.port.hypervisor == s.port.hypervisor:
                assert not seen_request, "a local address is answered in place"
            else:
                # the broadcast reaches the asker's own segment only, never another
                # hypervisor's guests: their hypervisors answer or drop it
                neighbours = {where[p.origin] for p in ports if p.tenant == s.tenant
                              and p.port.hypervisor == s.port.hypervisor and p is not s}
                assert seen_request == neighbours, res.steps


@SETTINGS
@given(configs())
def test_arp_for_an_unknown_address_is_not_answered_and_stays_on_its_hypervisor(data):
    net, ports, where = _setup(data)
    for s in ports:
        res = net.inject(*where[s.origin], _arp_request(s, "10.0.0.200"))
        same_hv = {where[p.origin] for p in ports if p.tenant == s.tenant
                   and p.port.hypervisor == s.port.hypervisor and p is not s}
        assert res.ports() == same_hv, res.steps


@SETTINGS
@given(configs(), st.sampled_from(["mac", "ip", "arp"]))
def test_spoofed_sources_are_dropped_at_port_security(data, what):
    net, ports, where = _setup(data)
    for s in ports:
        for d in ports:
            if s is d:
                continue
            pkt = _ip_packet(s, d.port.mac, str(d.port.ips[0]))
            if what == "mac":
                pkt["eth_src"] = "02:66:66:66:66:66"
            elif what == "ip":
                pkt["ipv4_src"] = "10.0.0.99"
            else:
                pkt = {"eth_src": s.port.mac, "eth_dst": BCAST, "eth_type": 0x0806, "arp_op": 1,
                       "arp_sha": s.port.mac, "arp_spa": "10.0.0.99", "arp_tpa": str(d.port.ips[0])}
            res = net.inject(*where[s.origin], pkt)
            assert not res.delivered
            assert [st.table for st in res.dropped_at] == [Table.PORT_SECURITY]


@SETTINGS
@given(configs())
def test_tunnel_packets_from_unknown_sources_are_dropped(data):
    net, ports, where = _setup(data)
    for d in ports:
        hv, _ = where[d.origin]
        vni = d.network.vni
        pkt = {"eth_src": "02:00:00:00:99:99", "eth_dst": d.port.mac, "eth_type": 0x0800,
               "tunnel_id": vni, "tun_ipv4_src": "192.168.50.77"}
        from netvirt.pipeline.layout import TUNNEL_OFPORT

        assert not net.inject(hv, TUNNEL_OFPORT, pkt).delivered


@SETTINGS
@given(configs(), st.sampled_from([0x1000, 0x1005, 0x1FFF]),
       st.sampled_from([0, 3, 4, 8, 9, 255]))
def test_tagged_frames_and_other_arp_opcodes_from_a_vm_go_nowhere(data, tagged, op):
    """vlan_vid is OpenFlow's: 0x1000 | VID for a tagged frame (a priority tag is 0x1000)."""
    net, ports, where = _setup(data)
    for s in ports:
        tagged_ip = {**_ip_packet(s, BCAST, "10.0.0.255"), "vlan_vid": tagged}
        arp = {"eth_src": s.port.mac, "eth_dst": BCAST, "eth_type": 0x0806, "arp_op": op,
               "arp_sha": s.port.mac, "arp_spa": str(s.port.ips[0]), "arp_tpa": "10.0.0.9"}
        for pkt in (tagged_ip, arp):
            res = net.inject(*where[s.origin], pkt)
            assert not res.delivered and not res.tunneled, (s.origin, pkt, res.steps)


@st.composite
def routed_configs(draw):
    """Tenants with two networks each, the same subnets in every tenant, a router between
    them or not; ports anywhere."""
    n_hv = draw(st.integers(1, 3))
    hvs = [{"name": f"hv{i + 1}", "underlay_ip": f"192.168.50.{i + 1}/24",
            "ovsdb": f"unix:/run/hv{i + 1}/db.sock"} for i in range(n_hv)]
    tenants = []
    for t in range(draw(st.integers(2, 3))):
        nets = [{"name": n, "subnets": [{"cidr": f"10.{k}.0.0/24", "gateway": f"10.{k}.0.254"}]}
                for k, n in enumerate(("a", "b"))]
        ports = []
        for i, h in enumerate(draw(st.lists(st.integers(1, 6), min_size=2, max_size=5,
                                            unique=True))):
            k = draw(st.integers(0, 1))
            ports.append({"name": f"p{i}", "network": "ab"[k], "ips": [f"10.{k}.0.{h}"],
                          "hypervisor": f"hv{draw(st.integers(1, n_hv))}"})
        tenant = {"name": f"t{t}", "networks": nets, "ports": ports}
        if draw(st.booleans()):
            tenant["routers"] = [{"name": "r", "interfaces": [{"network": "a"},
                                                              {"network": "b"}]}]
        tenants.append(tenant)
    return {"controller": {"openflow": "tcp:172.30.0.1:6653"}, "hypervisors": hvs,
            "tenants": tenants}


@SETTINGS
@given(routed_configs())
def test_routed_tenants_reach_what_their_router_joins_and_never_each_other(data):
    lc = load_data(data)
    topo, inv, _, net = compile_all(lc)
    ports = [topo.port(t.name, p.name) for t in lc.config.tenants for p in t.ports]
    where = {r.origin: (r.port.hypervisor, inv[r.port.hypervisor].ofports[r.port.interface])
             for r in ports}
    gateways = [i.mac for t in lc.config.tenants for n in ("a", "b")
                if (r := topo.router_of(t.name, n)) for i in r.interfaces]
    for s in ports:
        own = {where[p.origin] for p in ports if p.tenant == s.tenant}
        for d in ports:
            if s is d:
                continue
            # to the MAC the guest would use, and to every router MAC there is
            for dst_mac in {d.port.mac, *gateways}:
                res = net.inject(*where[s.origin], _ip_packet(s, dst_mac, str(d.port.ips[0])))
                assert res.ports() <= own, (s.origin, d.origin, dst_mac)
            if topo.should_reach(s, d) and s.network.name != d.network.name:
                gw = next(i.mac for i in topo.router_of(s.tenant, s.network.name).interfaces
                          if i.network.name == s.network.name)
                res = net.inject(*where[s.origin], _ip_packet(s, gw, str(d.port.ips[0])))
                assert res.ports() == {where[d.origin]}, (s.origin, d.origin, res.steps)
