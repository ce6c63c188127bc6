"""The stateful firewall compiled and walked without a switch (examples/firewalled.yaml):
what each rule lets in and out, replies, unsolicited packets, a removed rule cutting the
connections it allowed and no other, remote groups following their members; and every
check of the security-group YAML, located."""
import copy

import pytest
import yaml

from netvirt.config import load_file
from netvirt.errors import ConfigError
from netvirt.inspect.simulate import Network
from netvirt.nfv.firewall import port_prefixes
from netvirt.pipeline.tables import Table
from netvirt.reconcile.compiler import compile_flows
from netvirt.topology import Topology

from .helpers import ROOT_EXAMPLES, compile_all, load_data, matches_golden, sequential_inventory

FIREWALLED = ROOT_EXAMPLES / "firewalled.yaml"
SYN, SYNACK, ACK = 0x002, 0x012, 0x010


@pytest.fixture
def lab():
    return Lab(yaml.safe_load(FIREWALLED.read_text()))


class Lab:
    """The compiled config on 3 simulated switches; ``apply`` recompiles a changed config
    and keeps every switch's conntrack table, as a real apply does."""

    def __init__(self, data: dict):
        self.data = data
        self.topo, self.inv, self.per_hv, self.net = compile_all(load_data(data))

    def apply(self, data: dict):
        conntrack = self.net.conntrack
        self.data = data
        self.topo = Topology(load_data(data).config)
        self.inv = sequential_inventory(self.topo)
        self.per_hv = {hv: compile_flows(self.topo, hv, self.inv[hv]) for hv in self.topo.hypervisors}
        self.net = Network.of_config(self.per_hv, self.topo.config)
        self.net.conntrack = conntrack

    def at(self, name: str):
        ref = self.topo.port(self.topo.config.tenants[0].name, name)
        return ref, (ref.port.hypervisor, self.inv[ref.port.hypervisor].ofports[ref.port.interface])

    def send(self, src: str, dst: str, proto: int = 6, dport: int = 80, sport: int = 40000,
             flags: int = SYN, icmp_type: int = 8, reply: bool = False) -> bool:
        """Whether ``src``'s packet to ``dst`` arrives there (``reply``: as the answer to
        ``dst``'s packet with these ports)."""
        s, at = self.at(src)
        d, d_at = self.at(dst)
        pkt = {"eth_src": s.port.mac, "eth_dst": d.port.mac, "eth_type": 0x0800,
               "ipv4_src": str(s.port.ips[0]), "ipv4_dst": str(d.port.ips[0]), "ip_proto": proto,
               "nw_ttl": 64}
        if proto == 6:
            pkt.update(tcp_src=dport if reply else sport, tcp_dst=sport if reply else dport,
                       tcp_flags=flags)
        elif proto == 17:
            pkt.update(udp_src=dport if reply else sport, udp_dst=sport if reply else dport)
        else:
            pkt.update(icmpv4_type=0 if reply else icmp_type, icmpv4_code=0)
        res = self.net.inject(*at, pkt)
        return d_at in res.ports()


def test_each_rule_lets_in_what_it_says_and_nothing_else(lab):
    assert lab.send("client", "web1", dport=80)  # web: tcp 80 from anywhere
    assert lab.send("client", "web2", dport=80)  # across hypervisors (hv3 -> hv2)
    assert not lab.send("client", "web1", dport=81)
    assert not lab.send("client", "web1", proto=17, dport=80)
    assert not lab.send("client", "db1", dport=5432)  # db: 5432 from the web group only
    assert lab.send("web1", "db1", dport=5432)  # same hypervisor: both ports judged
    assert lab.send("web2", "db1", dport=5432)
    assert lab.send("web1", "web2", proto=1)  # icmp echo among web
    assert not lab.send("client", "web1", proto=1)
    assert not lab.send("db1", "web1", dport=80)  # db may start nothing (egress: deny)
    assert not lab.send("web1", "client", dport=80)  # web may start only 5432 to db, icmp


def test_replies_pass_and_unsolicited_packets_drop(lab):
    assert lab.send("client", "web1", dport=80)
    assert lab.send("web1", "client", dport=80, flags=SYNACK, reply=True)
    assert lab.send("client", "web1", dport=80, flags=ACK)
    assert lab.send("web1", "web2", proto=1)
    assert lab.send("web2", "web1", proto=1, reply=True)
    # a TCP segment of no connection is invalid; an echo reply nobody asked for is new
    assert not lab.send("db1", "web1", dport=80, sport=41000, flags=SYNACK, reply=True)
    assert not lab.send("web1", "client", dport=9, sport=41000, flags=ACK)
    assert not lab.send("db1", "web1", proto=1, reply=True)


def test_removing_a_rule_cuts_what_it_allowed_and_nothing_else(lab):
    assert lab.send("web1", "db1", dport=5432)
    assert lab.send("client", "web1", dport=80)
    data = copy.deepcopy(lab.data)
    del data["tenants"][0]["security_groups"][1]["rules"][0]  # db's 5432 from web
    lab.apply(data)
    assert not lab.send("web1", "db1", dport=5432, flags=ACK)  # established, cut
    assert not lab.send("db1", "web1", dport=5432, flags=ACK, reply=True)  # its replies too
    assert lab.send("client", "web1", dport=80, flags=ACK)  # another connection goes on
    assert lab.send("web1", "client", dport=80, flags=ACK, reply=True)


def test_adding_a_rule_cuts_nothing_and_a_connection_another_rule_allows_survives(lab):
    assert lab.send("client", "web1", dport=80)
    data = copy.deepcopy(lab.data)
    web = data["tenants"][0]["security_groups"][0]["rules"]
    web.append({"direction": "ingress", "protocol": "tcp", "ports": "80-90"})
    lab.apply(data)
    assert lab.send("client", "web1", dport=80, flags=ACK)  # added a rule: untouched
    del web[0]  # the rule that allowed it goes; 80-90 still allows it
    lab.apply(data)
    assert lab.send("client", "web1", dport=80, flags=ACK)
    assert lab.send("web1", "client", dport=80, flags=ACK, reply=True)
    assert lab.send("client", "web1", dport=85, sport=40001)


def test_a_remote_group_follows_its_members(lab):
    data = copy.deepcopy(lab.data)
    client = data["tenants"][0]["ports"][3]
    client["security_groups"] = ["web"]
    lab.apply(data)
    assert lab.send("client", "db1", dport=5432, sport=40002)  # now a web member
    del client["security_groups"]
    lab.apply(data)
    assert not lab.send("client", "db1", dport=5432, sport=40003)


def test_an_unfirewalled_port_and_arp_are_untouched(lab):
    data = copy.deepcopy(lab.data)
    data["tenants"][0]["firewall"] = {"ingress": "deny", "egress": "deny"}
    lab.apply(data)
    s, at = lab.at("web1")
    arp = {"eth_src": s.port.mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
           "arp_op": 1, "arp_spa": "10.2.0.1", "arp_tpa": "10.2.0.4", "arp_sha": s.port.mac}
    res = lab.net.inject(*at, arp)
    assert ("hv1", "192.168.50.3") in res.tunneled  # to client's hypervisor, which answers
    assert at in res.ports()
    assert not [st for st in res.steps if st.table in (Table.ACL_FROM_VM, Table.ACL_TO_VM)
                and st.flow.priority > 0]  # only the stages' misses: on it goes


def test_the_zone_and_the_flows_of_a_firewalled_port(lab):
    ports = {p.name: p for p in lab.topo.config.tenants[0].ports}
    zones = [p.zone for p in ports.values() if p.security_groups is not None]
    assert ports["client"].zone is None and len(set(zones)) == 3 and all(zones)
    # no flow of an unfirewalled hypervisor's (hv3 has only client) is a firewall flow
    assert not [f for f in lab.per_hv["hv3"].flows
                if f.table in (Table.ACL_FROM_VM, Table.ACL_TO_VM) and f.priority > 0]


@pytest.mark.parametrize("lo, hi", [(80, 80), (1, 65535), (8000, 8080), (1023, 1025),
                                    (0, 1), (32768, 65535)])
def test_a_port_range_is_the_fewest_masked_matches_that_cover_it_exactly(lo, hi):
    prefixes = port_prefixes(lo, hi)
    covered = {p for v, m in prefixes for p in range(65536) if p & m == v}
    assert covered == set(range(lo, hi + 1))
    assert len(prefixes) <= 2 * 16


def _problems(edit) -> list[str]:
    data = yaml.safe_load(FIREWALLED.read_text())
    edit(data["tenants"][0])
    with pytest.raises(ConfigError) as e:
        load_data(data, "f.yaml")
    return [f"{d.line}:{d.path}: {d.message}" for d in e.value.diagnostics]


def _rule(t, group=0, **kw):
    t["security_groups"][group]["rules"].append({"direction": "ingress", **kw})


@pytest.mark.parametrize("edit, where, says", [
    (lambda t: t["ports"][0].update(security_groups=["nope"]),
     "tenants[0].ports[0].security_groups[0]", "security group 'nope' is not defined"),
    (lambda t: _rule(t, protocol="tcp", ports="90-80"),
     "tenants[0].security_groups[0].rules[4].ports", "port range 90-80 is out of order"),
    (lambda t: _rule(t, protocol="icmp", ports="80"),
     "tenants[0].security_groups[0].rules[4].ports", "ports only apply to tcp and udp"),
    (lambda t: _rule(t, protocol="tcp", icmp_type=3),
     "tenants[0].security_groups[0].rules[4].icmp_type", "icmp_type only applies to icmp"),
    (lambda t: _rule(t, protocol="icmp", icmp_code=3),
     "tenants[0].security_groups[0].rules[4].icmp_code", "icmp_code needs an icmp_type"),
    (lambda t: _rule(t, remote_group="ghost"),
     "tenants[0].security_groups[0].rules[4].remote_group", "'ghost' is not defined"),
    (lambda t: _rule(t, remote_group="web", remote_cidr="10.0.0.0/8"),
     "tenants[0].security_groups[0].rules[4].remote_group", "a CIDR or a group, not both"),
    (lambda t: _rule(t, protocol="tcp", ports=80),
     "tenants[0].security_groups[0].rules[4]", "the same rule as rule #1"),
    (lambda t: t["security_groups"].append({"name": "web"}),
     "tenants[0].security_groups[2].name", "duplicate security group name 'web'"),
    (lambda t: t["ports"][0].update(allowed_address_pairs=[{"ip": "10.2.0.2"}]),
     "tenants[0].ports[0].allowed_address_pairs[0].ip", "the address of port 'web2'"),
])
def test_every_check_is_located(edit, where, says):
    problems = _problems(edit)
    assert any(f":{where}: " in p and says in p for p in problems), problems


def test_a_rule_may_not_name_another_tenants_group():
    data = yaml.safe_load(FIREWALLED.read_text())
    other = copy.deepcopy(data["tenants"][0])
    other["name"] = "rival"
    other["networks"][0]["vni"] = 3002
    other["security_groups"] = [{"name": "admins"}]
    for p in other["ports"]:
        p.pop("security_groups", None)
    data["tenants"].append(other)
    _rule(data["tenants"][0], remote_group="admins")
    with pytest.raises(ConfigError) as e:
        load_data(data, "f.yaml")
    assert any("security group 'admins' is tenant 'rival''s" in d.message
               for d in e.value.diagnostics), e.value.diagnostics


def test_rule_origins_lead_to_their_yaml_lines():
    lc = load_file(FIREWALLED)
    loc = lc.location("tenant/shop/security_group/db/rule/0")
    line = FIREWALLED.read_text().splitlines()[loc.line - 1]
    assert "5432" in line and "remote_group: web" in line


# -- the compiled firewall against the rules themselves, on generated tenants -------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from netvirt.config.firewall import permits  # noqa: E402
from netvirt.inspect.groups import GroupsProver  # noqa: E402

PORTS = [22, 80, 443, 5432]


@st.composite
def rules(draw, groups):
    proto = draw(st.sampled_from(["tcp", "udp", "icmp", "any"]))
    r = {"direction": draw(st.sampled_from(["ingress", "egress"])), "protocol": proto}
    if proto in ("tcp", "udp") and draw(st.booleans()):
        lo = draw(st.sampled_from(PORTS))
        r["ports"] = f"{lo}-{draw(st.sampled_from([p for p in PORTS if p >= lo]))}"
    if proto == "icmp" and draw(st.booleans()):
        r["icmp_type"] = draw(st.sampled_from([0, 8]))
    remote = draw(st.sampled_from(["none", "cidr", "host", "group"]))
    if remote == "cidr":
        r["remote_cidr"] = draw(st.sampled_from(["10.9.0.0/24", "10.9.0.0/30", "0.0.0.0/0"]))
    elif remote == "host":
        r["remote_cidr"] = f"10.9.0.{draw(st.integers(1, 6))}/32"
    elif remote == "group":
        r["remote_group"] = draw(st.sampled_from(groups))
    return r


@st.composite
def tenants(draw):
    groups = ["g1", "g2", "g3"][:draw(st.integers(1, 3))]
    sgs = []
    for g in groups:
        rs = draw(st.lists(rules(groups), max_size=4))
        unique = [r for i, r in enumerate(rs) if r not in rs[:i]]
        sgs.append({"name": g, "rules": unique})
    ports = []
    for i in range(1, draw(st.integers(3, 6)) + 1):
        p = {"name": f"p{i}", "network": "lan", "hypervisor": f"hv{draw(st.integers(1, 3))}",
             "ips": [f"10.9.0.{i}"], "mac": f"02:00:00:00:09:{i:02x}"}
        if draw(st.booleans()):
            p["security_groups"] = draw(st.lists(st.sampled_from(groups), unique=True))
        ports.append(p)
    return {
        "hypervisors": [{"name": f"hv{i}", "underlay_ip": f"192.168.50.{i}/24",
                         "ovsdb": f"unix:/tmp/hv{i}.sock"} for i in (1, 2, 3)],
        "tenants": [{"name": "t", "firewall": {
            "ingress": draw(st.sampled_from(["allow", "deny"])),
            "egress": draw(st.sampled_from(["allow", "deny"]))},
            "networks": [{"name": "lan", "vni": 900, "subnets": [{"cidr": "10.9.0.0/24"}]}],
            "security_groups": sgs, "ports": ports}]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenants())
def test_the_compiled_firewall_decides_as_the_rules_say_for_every_packet(data):
    lab = Lab(data)
    t = lab.topo.config.tenants[0]
    # the isolation proof's firewall half finds nothing in a firewall that decides as the
    # rules say (below), and it judges per side, stricter than these pairs
    assert GroupsProver().prove(lab.topo, lab.per_hv, lab.inv) == []
    pristine = lab.net
    for s in t.ports:
        for d in t.ports:
            if s is d:
                continue
            for proto, dport, icmp_type in (("tcp", 80, None), ("tcp", 5432, None),
                                            ("udp", 443, None), ("icmp", None, 8)):
                lab.net = pristine.fresh()  # each packet a new connection
                want = permits(t, s, d, proto, dport, icmp_type, 0 if icmp_type else None)
                got = lab.send(s.name, d.name, {"tcp": 6, "udp": 17, "icmp": 1}[proto],
                               dport=dport or 0, icmp_type=icmp_type or 8)
                assert got == want, (s.name, d.name, proto, dport, t.security_groups,
                                     s.security_groups, d.security_groups, t.firewall)


@pytest.mark.parametrize("hv", ["hv1", "hv2", "hv3"])
def test_firewalled_pipeline_matches_golden(hv):
    assert matches_golden(compile_all(load_file(FIREWALLED))[2][hv].dump(), f"firewalled-{hv}")


def test_the_drop_log_names_the_port_the_direction_and_the_connection(caplog):
    import logging

    from scapy.all import IP, TCP, Ether

    from netvirt.controller.packet_in import PacketIns, Punt

    lc = load_file(FIREWALLED)
    topo, inv, _, net = compile_all(lc)
    db1 = topo.port("shop", "db1")
    db1_at = inv["hv1"].ofports[db1.port.interface]

    class Service:
        def port_at(self, hv, ofport):
            return db1 if (hv, ofport) == ("hv1", db1_at) else None

    # what the switch would send: client's SYN to db1:5432, denied by db1's ACL_TO_VM
    client, c_at = Lab(yaml.safe_load(FIREWALLED.read_text())).at("client")
    syn = {"eth_src": client.port.mac, "eth_dst": db1.port.mac, "eth_type": 0x0800,
           "ipv4_src": "10.2.0.4", "ipv4_dst": "10.2.0.3", "ip_proto": 6, "tcp_src": 40999,
           "tcp_dst": 5432, "tcp_flags": SYN, "nw_ttl": 64}
    res = net.inject(*c_at, syn)
    (hv, pkt), = res.to_controller
    assert (hv, res.punted_at[0].table) == ("hv1", Table.ACL_TO_VM) and not res.delivered
    frame = bytes(Ether(src=client.port.mac, dst=db1.port.mac) / IP(src="10.2.0.4", dst="10.2.0.3")
                  / TCP(sport=40999, dport=5432, flags="S"))
    p = PacketIns(Service())
    with caplog.at_level(logging.INFO, logger="netvirt.firewall"):
        verdict = p.handle("hv1", None, Punt(4789, Table.ACL_TO_VM, 0, frame, pkt["reg1"]))
    assert verdict == "firewall_denied"
    assert ("denied on hv1: shop/db1 receives tcp 10.2.0.4:40999 -> 10.2.0.3:5432: no rule "
            "of its security groups (db) allows it") in caplog.text
    assert p.handle("hv1", None, Punt(4789, Table.ACL_TO_VM, 0, b"\x00" * 10, 99)) == \
        "not_understood"
