"""The simulator's conntrack: what a stateful pipeline (the firewall, NAT) will rely on.
Flows are written by hand here, in the shape a firewall compiles to: every IP packet goes
through ct in the tenant's zone, new connections from port 1 are committed, established and
related packets pass both ways, anything else drops."""
from dataclasses import dataclass

from netvirt.inspect.simulate import Network
from netvirt.pipeline.layout import CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_TRK
from netvirt.pipeline.records import CT, NAT, DecTtl, Flow, Output
from netvirt.pipeline.tables import Table

ZONE = 9
TRK_NEW = (CT_TRK | CT_NEW, CT_TRK | CT_NEW | CT_EST | CT_REL | CT_INV)
TRK_EST = (CT_TRK | CT_EST, CT_TRK | CT_EST | CT_INV)
TRK_REL = (CT_TRK | CT_REL, CT_TRK | CT_REL | CT_INV)


@dataclass
class Compiled:
    flows: list
    groups: tuple = ()


def _network(nat: NAT | None = None) -> Network:
    f = Flow.make
    flows = [
        f(Table.CLASSIFY, 10, {"eth_type": 0x800}, [CT(zone=ZONE, table=Table.L2_LOOKUP,
                                                       nat=NAT() if nat else None)], "fw/in"),
        f(Table.L2_LOOKUP, 30, {"ct_state": TRK_NEW, "in_port": 1},
          [CT(commit=True, zone=ZONE, nat=nat, mark=7), DecTtl(), Output(2)], "fw/allow-out"),
        f(Table.L2_LOOKUP, 20, {"ct_state": TRK_EST, "in_port": 1}, [Output(2)], "fw/est"),
        f(Table.L2_LOOKUP, 20, {"ct_state": TRK_EST, "in_port": 2}, [Output(1)], "fw/est"),
        f(Table.L2_LOOKUP, 20, {"ct_state": TRK_REL, "in_port": 2}, [Output(1)], "fw/rel"),
    ]
    return Network({"hv1": Compiled(flows)}, {"hv1": "192.168.0.1"})


def _udp(src, dst, sport, dport, **extra):
    return {"eth_type": 0x800, "ipv4_src": src, "ipv4_dst": dst, "ip_proto": 17,
            "udp_src": sport, "udp_dst": dport, **extra}


def _out(res):
    return {(port, dict(pkt).get("ipv4_src"), dict(pkt).get("ipv4_dst")) for _, port, pkt in res.delivered}


def test_a_new_connection_commits_and_its_replies_are_established():
    net = _network()
    first = net.inject("hv1", 1, _udp("10.0.0.1", "10.0.0.2", 5000, 53))
    assert _out(first) == {(2, "10.0.0.1", "10.0.0.2")}
    assert first.steps[-1].flow.origin == "fw/allow-out"  # it was +new
    assert len(net.conntrack["hv1"]) == 1
    again = net.inject("hv1", 1, _udp("10.0.0.1", "10.0.0.2", 5000, 53))
    assert again.steps[-1].flow.origin == "fw/est"
    reply = net.inject("hv1", 2, _udp("10.0.0.2", "10.0.0.1", 53, 5000))
    assert _out(reply) == {(1, "10.0.0.2", "10.0.0.1")}


def test_a_connection_the_other_side_opens_is_new_and_dropped():
    net = _network()
    net.inject("hv1", 1, _udp("10.0.0.1", "10.0.0.2", 5000, 53))
    res = net.inject("hv1", 2, _udp("10.0.0.2", "10.0.0.1", 53, 5001))  # another 5-tuple
    assert not res.delivered and res.dropped_at[-1].table == Table.L2_LOOKUP


def test_an_icmp_error_about_a_tracked_connection_is_related():
    net = _network()
    net.inject("hv1", 1, _udp("10.0.0.1", "10.0.0.2", 5000, 53))
    unreachable = {"eth_type": 0x800, "ipv4_src": "10.0.0.2", "ipv4_dst": "10.0.0.1",
                   "ip_proto": 1, "icmpv4_type": 3,
                   "icmp_inner": (17, "10.0.0.1", 5000, "10.0.0.2", 53)}
    res = net.inject("hv1", 2, unreachable)
    assert _out(res) == {(1, "10.0.0.2", "10.0.0.1")} and res.steps[-1].flow.origin == "fw/rel"
    stray = {**unreachable, "icmp_inner": (17, "10.0.0.1", 5999, "10.0.0.2", 53)}
    assert not net.inject("hv1", 2, stray).delivered


def test_a_syn_ack_of_no_known_connection_is_invalid_and_another_segment_is_picked_up():
    """As OVS's userspace conntrack does (seen in tests/integration/test_firewall.py): a
    half-open start is invalid, a mid-stream segment starts a connection."""
    net = _network()
    synack = {"eth_type": 0x800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2", "ip_proto": 6,
              "tcp_src": 4000, "tcp_dst": 80, "tcp_flags": 0x012}
    assert not net.inject("hv1", 1, synack).delivered
    state, _ = net.conntrack["hv1"].execute(CT(zone=ZONE), dict(synack))
    assert state == CT_TRK | CT_INV
    state, _ = net.conntrack["hv1"].execute(CT(zone=ZONE), {**synack, "tcp_flags": 0x010})
    assert state == CT_TRK | CT_NEW


def test_source_nat_translates_a_connection_and_its_replies_back():
    net = _network(NAT("src", "203.0.113.5"))
    out = net.inject("hv1", 1, _udp("10.0.0.1", "198.51.100.7", 5000, 53))
    assert _out(out) == {(2, "203.0.113.5", "198.51.100.7")}
    reply = net.inject("hv1", 2, _udp("198.51.100.7", "203.0.113.5", 53, 5000))
    assert _out(reply) == {(1, "198.51.100.7", "10.0.0.1")}
    later = net.inject("hv1", 1, _udp("10.0.0.1", "198.51.100.7", 5000, 53))
    assert _out(later) == {(2, "203.0.113.5", "198.51.100.7")}


def test_the_mark_is_kept_with_the_connection_and_ttl_decremented():
    net = _network()
    first = net.inject("hv1", 1, _udp("10.0.0.1", "10.0.0.2", 5000, 53, nw_ttl=2))
    assert {dict(p)["nw_ttl"] for _, _, p in first.delivered} == {1}
    state, mark = net.conntrack["hv1"].execute(CT(zone=ZONE), _udp("10.0.0.2", "10.0.0.1", 53, 5000))
    assert state == CT_TRK | CT_EST | CT_RPL and mark == 7
    expired = _network().inject("hv1", 1, _udp("10.0.0.1", "10.0.0.2", 5000, 53, nw_ttl=1))
    assert not expired.delivered


def test_zones_keep_tenants_apart():
    net = _network()
    net.inject("hv1", 1, _udp("10.0.0.1", "10.0.0.2", 5000, 53))
    state, _ = net.conntrack["hv1"].execute(CT(zone=ZONE + 1), _udp("10.0.0.2", "10.0.0.1", 53, 5000))
    assert state == CT_TRK | CT_NEW
