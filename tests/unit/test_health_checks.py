"""Load balancer health checks in the controller, against agents whose switches are fakes
(no OVS): each check is a TCP SYN from the VIP into the egress of the member's port, on its
own hypervisor; SYN+ACK passes (and is reset), RST or silence fails; `fall` failures take the
member out of the select group on every hypervisor, `rise` passes bring it back; with no
member up, a new connection goes to the controller, which refuses it with a reset.  An http
check completes the handshake, sends its GET and judges the response's status."""
import time

import pytest
import yaml

from netvirt.controller.health import RECONNECT_GRACE, HealthMonitor
from netvirt.controller.service import ControllerService
from netvirt.drivers import packets
from netvirt.pipeline.records import GroupAction, Output
from netvirt.pipeline.tables import Table
from netvirt.reconcile.agent import HypervisorAgent
from netvirt.testing.fakes import FakeSwitch
from netvirt.topology import Topology
from netvirt.topology.balancer import PROBE_PORT
from netvirt.topology.render import tree

from .helpers import ROOT_EXAMPLES, load_data, sequential_inventory

CHECK = {"interval": 1.0, "timeout": 0.5, "rise": 2, "fall": 2}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def lab():
    yield from _lab(CHECK)


@pytest.fixture
def http_lab():
    yield from _lab({**CHECK, "type": "http", "path": "/healthz", "expect": [200, 204]})


def _lab(check):
    data = yaml.safe_load((ROOT_EXAMPLES / "balanced.yaml").read_text())
    data["tenants"][0]["load_balancers"][0]["health_check"] = check
    lc = load_data(data, "checked.yaml")
    inv = sequential_inventory(Topology(lc.config))
    switches = {hv: FakeSwitch(dict(i.ofports)) for hv, i in inv.items()}

    def agent(name, service, audit):
        a = HypervisorAgent(name, service, audit, ovsdb_factory=lambda ep: switches[name].ovsdb)
        a.attach(switches[name])
        return a

    service = ControllerService(None, "tcp:172.30.0.1:6653", audit_interval=60,
                                agent_factory=agent)
    clock = Clock()
    service.health = HealthMonitor(service, clock=clock)  # driven by the test, not a thread
    service.apply(lc)
    _settle(service)
    yield service, switches, clock
    service.stop()


def _settle(service):
    """Until every agent has the monitor's verdicts and is in sync with them."""
    for _ in range(300):
        st = service.status()
        down = service.health.down()
        if st["in_sync"] and all(a.inventory.down_members == down
                                 for a in service.agents.values()):
            return
        time.sleep(0.01)
    raise AssertionError(st)


def _checks(switches, hv):
    out = [f for _, f in switches[hv].packets_out]
    switches[hv].packets_out.clear()
    return [packets.tcp_of(f) for f in out]


def _answer(service, syn, flags):
    src, sport, dst, dport, _, seq, _, src_mac, dst_mac, _ = syn
    frame = packets.tcp_segment(dst_mac, dst, dport, src_mac, src, sport, flags, 7,
                                (seq + 1) & 0xFFFFFFFF)
    return service.health.answer(frame)


def _members_picked(service, hv) -> set[str]:
    """Where the select group LB_PICK names on ``hv`` DNATs to (its buckets' addresses)."""
    from netvirt.reconcile.compiler import compile_flows

    _, _, topo = service.snapshot()
    d = compile_flows(topo, hv, service.agents[hv].inventory)
    picks = [f for f in d.flows if f.table == Table.LB_PICK and f.priority == 100]
    ids = {a.group_id for f in picks for a in f.actions if isinstance(a, GroupAction)}
    return {b[0].nat.ip_min for g in d.groups if g.group_id in ids for b in g.buckets}


def _round(service, switches, clock, answers: dict) -> None:
    """One round of checks: each member answers with its flags (None: silence)."""
    service.health.tick()
    for hv, ip in (("hv1", "10.0.0.1"), ("hv2", "10.0.0.2"), ("hv3", "10.0.0.3")):
        for syn in _checks(switches, hv):
            if syn[4] == 0x02 and answers.get(ip) is not None:
                _answer(service, syn, answers[ip])
        _checks(switches, hv)  # the resets that end passed checks
    clock.now += 1.0


def test_a_check_is_a_syn_from_the_vip_into_the_members_egress_on_its_hypervisor(lab):
    service, switches, clock = lab
    service.health.tick()
    (syn,) = _checks(switches, "hv1")  # web1 is on hv1
    src, sport, dst, dport, flags = syn[:5]
    assert (src, sport, dst, dport, flags) == ("10.0.0.100", PROBE_PORT, "10.0.0.1", 8080, 0x02)
    assert _answer(service, syn, 0x12) == "check_passed"
    (actions, _), = switches["hv1"].packets_out  # the reset, the same way as the check
    assert [str(a) for a in actions] == ["set_field:2->reg1", "resubmit(,LB_REPLY)"]
    (rst,) = _checks(switches, "hv1")
    assert rst[4] & 0x04  # the half-open connection is reset


def test_fall_failures_take_a_member_out_everywhere_and_rise_passes_bring_it_back(lab):
    service, switches, clock = lab
    ok, refused = 0x12, 0x14
    _round(service, switches, clock, {"10.0.0.1": ok, "10.0.0.2": refused, "10.0.0.3": ok})
    assert service.health.down() == frozenset()  # one failure: fall is 2
    _round(service, switches, clock, {"10.0.0.1": ok, "10.0.0.2": refused, "10.0.0.3": ok})
    assert service.health.down() == {"tenant/blue/load_balancer/www/member/web2"}
    _settle(service)
    for hv in ("hv1", "hv2", "hv3"):
        assert _members_picked(service, hv) == {"10.0.0.1", "10.0.0.3"}, hv
    lb = service.topology()["tenants"][0]["load_balancers"][0]
    assert {m["port"]: m["health"] for m in lb["members"]} == {
        "web1": "up", "web2": "down", "web3": "up"}
    assert all(m["since"] for m in lb["members"])
    (down,) = service.status()["load_balancer_members_down"]
    assert down["member"] == "blue/www/web2" and down["since"]  # tenant/VIP/member
    assert down["last_check"] == "reset by the member"
    lines = [x.strip() for x in tree(service.topology())]
    assert [x for x in lines if x.startswith("load balancer www")] == [
        "load balancer www  tcp 10.0.0.100:80  on web  zone 41941  checks: tcp connect every 1s"]
    web2, _ = [x for x in lines if x.startswith("member web2")]  # www's, then shop's
    assert web2.endswith(", last check: reset by the member"), web2
    assert service.status()["healthy"]  # a tenant's server, not netvirt
    trace = service.trace({"from": "blue/client", "to_ip": "10.0.0.100", "proto": "tcp",
                           "dst_port": 80})
    (pick,) = [st for st in trace["packet"]["steps"] if st.get("choices")]
    assert {c["to"]: c["health"] for c in pick["choices"]} == {
        "10.0.0.1:8080": "up", "10.0.0.3:8080": "up", "10.0.0.2:8080": "down"}
    for _ in range(2):  # answers twice: up again
        _round(service, switches, clock, {"10.0.0.1": ok, "10.0.0.2": ok, "10.0.0.3": ok})
    assert service.health.down() == frozenset()
    _settle(service)
    assert _members_picked(service, "hv1") == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}


def test_with_no_member_up_a_new_connection_is_refused_with_a_reset(lab):
    service, switches, clock = lab
    for _ in range(2):
        _round(service, switches, clock, {})  # silence from all: down after the timeout
        service.health.tick()
    _settle(service)
    assert len(service.health.down()) == 3
    for hv in ("hv1", "hv2", "hv3"):
        assert _members_picked(service, hv) == set()
    _, _, topo = service.snapshot()
    from netvirt.reconcile.compiler import compile_flows
    d = compile_flows(topo, "hv1", service.agents["hv1"].inventory)
    picks = [f for f in d.flows if f.table == Table.LB_PICK and f.priority == 100
             and f.origin == "tenant/blue/load_balancer/www"]  # shop has no check: it is up
    assert picks and all(Output("CONTROLLER") in f.actions for f in picks)
    client = packets.tcp_segment("02:00:00:00:01:0a", "10.0.0.10", 40000, "06:00:00:00:00:01",
                                 "10.0.0.100", 80, 0x02, 1000)
    rst = packets.tcp_of(packets.tcp_reset(client))
    assert rst[:5] == ("10.0.0.100", 80, "10.0.0.10", 40000, 0x14) and rst[6] == 1001


def test_an_old_syn_ack_is_reset_so_that_the_members_next_answer_is_fresh(lab):
    """A member whose SYN+ACK came while no check waited for it (the controller was
    restarting, the load balancer out of the config) keeps that half-open connection and
    answers the next check's SYN with it: the check resets it, as a TCP stack would."""
    service, switches, clock = lab
    service.health.tick()
    (syn,) = [s for s in _checks(switches, "hv1") if s[4] == 0x02]
    src, sport, dst, dport, _, seq, _, src_mac, dst_mac, _ = syn
    old = packets.tcp_segment(dst_mac, dst, dport, src_mac, src, sport, 0x12, 7, 424242)
    assert service.health.answer(old) == "stale_check"
    rst, again = _checks(switches, "hv1")
    assert rst[:5] == (src, sport, dst, dport, 0x04) and rst[5] == 424242, rst
    assert again[:6] == syn[:6]  # the check's own SYN, sent again
    assert _answer(service, syn, 0x12) == "check_passed"  # the real answer still counts


def test_silence_is_a_failure_after_the_timeout(lab):
    service, switches, clock = lab
    for _ in range(2):
        service.health.tick()  # sends
        clock.now += 0.6  # > timeout: no answer
        service.health.tick()
        clock.now += 0.4
    assert "tenant/blue/load_balancer/www/member/web1" in service.health.down()


def test_a_switch_not_met_yet_fails_no_check_until_the_grace_is_over(lab):
    """A restarted controller: web2's switch has not dialled in yet.  That says nothing of
    web2, so its checks wait (for up to RECONNECT_GRACE); a switch that was connected and
    went away fails its members' checks at once."""
    service, switches, clock = lab
    agent = service.agents["hv2"]
    sw, agent.switch, agent.status.switch_connected_at = agent.switch, None, 0.0
    web2 = "tenant/blue/load_balancer/www/member/web2"
    for _ in range(4):  # fall is 2: twice what would take it out
        _round(service, switches, clock, {"10.0.0.1": 0x12, "10.0.0.3": 0x12})
    assert service.health.down() == frozenset()
    assert service.health.snapshot()[web2].last.startswith("not checked yet")
    clock.now = service.health._started + RECONNECT_GRACE  # it never came
    for _ in range(2):
        _round(service, switches, clock, {"10.0.0.1": 0x12, "10.0.0.3": 0x12})
    assert service.health.down() == {web2}
    agent.switch, agent.status.switch_connected_at = sw, 1.0  # back: checks run again
    for _ in range(2):
        _round(service, switches, clock, {"10.0.0.1": 0x12, "10.0.0.2": 0x12, "10.0.0.3": 0x12})
    assert service.health.down() == frozenset()
    agent.switch = None  # met, and gone: no grace
    for _ in range(2):
        _round(service, switches, clock, {"10.0.0.1": 0x12, "10.0.0.3": 0x12})
    assert service.health.down() == {web2}
    assert service.health.snapshot()[web2].last == "the member's switch is not connected"


def _reply(service, to, flags, seq, payload=b""):
    """The member's segment answering ``to`` (the controller's last segment to it)."""
    ack = (to.seq + (1 if to.flags & 0x02 else len(to.payload))) & 0xFFFFFFFF
    frame = packets.tcp_segment(to.dst_mac, to.dst, to.dport, to.src_mac, to.src, to.sport,
                                flags, seq, ack, payload)
    return service.health.answer(frame)


@pytest.mark.parametrize("status, passes", [(200, True), (204, True), (503, False)])
def test_an_http_check_sends_its_get_after_the_handshake_and_judges_the_status(
        http_lab, status, passes):
    service, switches, _ = http_lab
    service.health.tick()
    (syn,) = _checks(switches, "hv1")
    assert _reply(service, syn, 0x12, 5000) == "check_progress"  # SYN+ACK: now the request
    (get,) = _checks(switches, "hv1")
    assert get.flags == 0x18 and get.ack == 5001 and get.seq == (syn.seq + 1) & 0xFFFFFFFF
    assert get.payload.startswith(b"GET /healthz HTTP/1.0\r\nHost: 10.0.0.100\r\n")
    assert _reply(service, get, 0x10, 5001) == "check_progress"  # its ACK, no answer yet
    assert not _checks(switches, "hv1")
    body = f"HTTP/1.0 {status} Whatever\r\nServer: t\r\n\r\n".encode()
    assert _reply(service, get, 0x18, 5001, body) == ("check_passed" if passes
                                                      else "check_failed")
    (rst,) = _checks(switches, "hv1")
    assert rst.flags & 0x04 and rst.seq == (get.seq + len(get.payload)) & 0xFFFFFFFF
    member = service.health.snapshot()["tenant/blue/load_balancer/www/member/web1"]
    assert member.checked and member.failures == (0 if passes else 1)
    assert member.last == f"HTTP {status}"  # what topo and status say of a member down


def test_an_http_check_fails_on_a_close_without_an_answer_or_a_non_http_answer(http_lab):
    service, switches, clock = http_lab
    for answer in ((0x11, b""), (0x18, b"SSH-2.0-OpenSSH_9.2\r\n")):  # FIN; another server
        service.health.tick()
        (syn,) = _checks(switches, "hv1")
        _reply(service, syn, 0x12, 5000)
        (get,) = _checks(switches, "hv1")
        assert _reply(service, get, answer[0], 5001, answer[1]) == "check_failed"
        _checks(switches, "hv1")
        clock.now += 1.0
    assert "tenant/blue/load_balancer/www/member/web1" in service.health.down()
