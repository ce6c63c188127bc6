"""The reconciler against in-memory drivers: converge, stay quiet, repair, restart."""
from netvirt.config import load_file
from netvirt.reconcile.agent import HypervisorAgent
from netvirt.errors import NetvirtError
from netvirt.pipeline.tables import Table
from netvirt.reconcile.diff import InstalledFlow
from netvirt.testing.fakes import FakeSwitch
from netvirt.topology import Topology

from .helpers import DEMO_FLOWS, ROOT_EXAMPLES, sequential_inventory


class OneRevision:
    """The one thing an agent asks of the service: the current config revision."""

    def __init__(self, lc):
        self.lc, self.topo = lc, Topology(lc.config)

    def snapshot(self):
        return 1, self.lc, self.topo

    def notify(self):
        pass


def _setup():
    service = OneRevision(load_file(ROOT_EXAMPLES / "demo.yaml"))
    inv = sequential_inventory(service.topo)["hv1"]
    return service, FakeSwitch(dict(inv.ofports))


def _agent(service, switch):
    a = HypervisorAgent("hv1", service, audit_interval=60,
                        ovsdb_factory=lambda ep: switch.ovsdb)
    a.attach(switch)
    return a


def test_converges_then_sends_nothing_more():
    service, sw = _setup()
    a = _agent(service, sw)
    a.reconcile_once()
    assert a.status.in_sync and sw.flow_mods_sent == a.status.desired_flows == DEMO_FLOWS
    a.mark_dirty(reread=True)
    a.reconcile_once()
    assert sw.flow_mods_sent == DEMO_FLOWS and a.status.in_sync


def test_a_restarted_controller_sends_zero_flow_mods():
    service, sw = _setup()
    _agent(service, sw).reconcile_once()
    before = sw.flow_mods_sent
    fresh = _agent(service, sw)  # a new process: empty mirror, reads the switch
    fresh.reconcile_once()
    assert sw.flow_mods_sent == before and fresh.status.in_sync


def test_foreign_and_deleted_flows_are_repaired():
    service, sw = _setup()
    a = _agent(service, sw)
    a.reconcile_once()
    victim = next(iter(sw.flows))
    del sw.flows[victim]
    sw.flows[(0, 7, (("in_port", 99),))] = InstalledFlow(0, 7, 0xBAD, (("in_port", 99),))
    a.flow_removed((victim[0], victim[1], 0))  # what OVS reports for the deleted flow
    a.take_events()
    assert not a.status.in_sync
    a.reconcile_once()
    assert a.status.in_sync and (0, 7, (("in_port", 99),)) not in sw.flows
    assert len(sw.flows) == DEMO_FLOWS


def test_flows_the_switch_learned_are_left_alone_across_a_restart():
    """A source-affinity load balancer's learned flows (LB_AFFINITY above its miss) are the
    switch's: a new agent (a controller restart) reads them and sends nothing."""
    service, sw = _setup()
    _agent(service, sw).reconcile_once()
    learned = (int(Table.LB_AFFINITY), 100, (("ipv4_src", "10.0.0.10"),))
    sw.flows[learned] = InstalledFlow(*learned[:2], 0x1234 << 32, learned[2])
    before = sw.flow_mods_sent
    a = _agent(service, sw)
    a.reconcile_once()
    assert a.status.in_sync and sw.flow_mods_sent == before and learned in sw.flows
    # a flow in a table the reconcile owns is still repaired: only learned stages are spared
    sw.flows[(0, 7, (("in_port", 99),))] = InstalledFlow(0, 7, 0xBAD, (("in_port", 99),))
    a = _agent(service, sw)
    a.reconcile_once()
    assert (0, 7, (("in_port", 99),)) not in sw.flows and learned in sw.flows


def test_own_deletions_do_not_trigger_a_reread():
    service, sw = _setup()
    a = _agent(service, sw)
    a.reconcile_once()
    sw.ofports.pop(next(iter(sw.ofports)))  # a VM goes away: its flows are deleted by us
    a.port_changed(*next((k, None) for k in a.inventory.ofports if k not in sw.ofports))
    a.reconcile_once()
    deleted = [k for k in a._expect_removed]
    assert deleted, "the agent expects the removals it caused"
    a.flow_removed(deleted[0])
    a.take_events()
    assert a.status.in_sync and not a._read_flows


class PortPlugsDuringTheRead(FakeSwitch):
    """A VM's port appears while the port list is on its way: the list (made first) lacks it,
    and its PortStatus, which follows the list on the connection, is handled before the agent
    has stored the list."""

    agent: HypervisorAgent  # whose os-ken thread handles the PortStatus

    def __init__(self, ofports, late: str):
        self.late = late
        self.plugged = ofports.pop(late)
        super().__init__(ofports)

    def read_ports(self):
        ports = super().read_ports()
        if self.late not in self.ofports:
            self.ofports[self.late] = self.plugged
            self.agent.port_changed(self.late, (self.plugged, True))
        return ports


def test_a_port_event_during_the_port_read_is_not_lost():
    service, sw = _setup()
    late = next(iter(sw.ofports))
    sw = PortPlugsDuringTheRead(dict(sw.ofports), late)
    sw.agent = a = _agent(service, sw)
    a.reconcile_once()
    assert not a.status.in_sync, "compiled from a port list that an event has overtaken"
    a.reconcile_once()  # the pass the event's wake-up asks for
    assert a.inventory.ofports.get(late) == sw.plugged
    assert a.status.in_sync and not a.status.ports_down and len(sw.flows) == DEMO_FLOWS


def test_ovsdb_is_written_once_per_revision():
    service, sw = _setup()
    db = sw.ovsdb
    a = _agent(service, sw)
    a.reconcile_once()
    a.reconcile_once()
    assert db.writes == 1 and a.status.datapath_type == "netdev"
    assert {p.name for p in db.state.ports} >= {"nv-vxlan", "tap2544c6b57b"}


def test_ovsdb_is_read_back_at_audits_not_at_every_switch_reconnect():
    service, sw = _setup()
    db = sw.ovsdb
    a = _agent(service, sw)
    a.reconcile_once()
    assert db.full_reads == 1
    a.attach(sw)  # the switch reconnects (a vswitchd restart): OVSDB did not change
    a.reconcile_once()
    assert db.full_reads == 1 and a.status.in_sync
    a._audit_ovsdb = True  # what the periodic audit sets
    a.reconcile_once()
    assert db.full_reads == 2 and db.writes == 1


class FailsMidway(FakeSwitch):
    """Applies the plan's groups, then loses the connection's answer (a barrier timeout)."""

    fail = True

    def apply(self, plan):
        if self.fail:
            self.fail = False
            self.groups |= {g.group_id for g in plan.add_groups}
            raise NetvirtError("no reply to OFPBarrierRequest")
        if set(g.group_id for g in plan.add_groups) & self.groups:
            raise AssertionError("re-added a group the switch already has")
        super().apply(plan)


def test_a_failed_apply_rereads_the_switch_instead_of_resending():
    service, sw = _setup()
    sw = FailsMidway(sw.ofports)
    a = _agent(service, sw)
    try:
        a.reconcile_once()
    except NetvirtError as e:
        a._failed(str(e))  # what the agent's turn does with it
    assert a._read_flows
    a.reconcile_once()
    assert a.status.in_sync and len(sw.flows) == DEMO_FLOWS


class FlowDeletedDuringTheRead(FakeSwitch):
    """Someone deletes a flow while the flow table is on its way: the table read (made
    first) still has it, and the FlowRemoved that follows is handled on os-ken's thread
    before the agent has stored the table."""

    agent: HypervisorAgent

    def __init__(self, ofports):
        super().__init__(ofports)
        self.armed = False

    def read_flows(self):
        flows = super().read_flows()
        if self.armed:
            self.armed = False
            slot, victim = next(iter(self.flows.items()))
            del self.flows[slot]
            self.agent.flow_removed(victim.key)
        return flows


def test_a_flow_removed_during_the_flow_read_is_not_lost():
    service, sw = _setup()
    sw = FlowDeletedDuringTheRead(dict(sw.ofports))
    sw.agent = a = _agent(service, sw)
    a.reconcile_once()
    assert len(sw.flows) == DEMO_FLOWS
    sw.armed = True
    a.mark_dirty(reread=True)
    a.reconcile_once()  # read the table with the flow; its removal is queued meanwhile
    assert len(sw.flows) == DEMO_FLOWS - 1
    for _ in range(3):  # the agent's next turns
        a.step()
    assert len(sw.flows) == DEMO_FLOWS and a.status.in_sync


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class CountsReads(FakeSwitch):
    reads = 0

    def read_flows(self):
        self.reads += 1
        return super().read_flows()


def test_the_audit_runs_on_time_under_a_steady_stream_of_events():
    service, sw = _setup()
    sw = CountsReads(dict(sw.ofports))
    a, _, clock = _clocked(service, sw, 10)
    assert sw.reads == 1
    name = next(iter(sw.ofports))
    for second in range(1, 31):  # a port flapping every second for 30 s
        clock.now += 1
        a.port_changed(name, (sw.ofports[name], second % 2 == 0))
        a.step()
    assert sw.reads == 1 + 3 and a.status.audits == 3, "an audit every 10 s, events or not"


def _clocked(service, sw, audit_interval: float):
    """An agent on a fake clock with a fake OVSDB, attached to ``sw`` and through its first
    turn."""
    db, clock = sw.ovsdb, Clock()
    a = HypervisorAgent("hv1", service, audit_interval=audit_interval,
                        ovsdb_factory=lambda ep: db, clock=clock)
    a.attach(sw)
    a.step()
    return a, db, clock


def test_flows_are_repaired_while_ovsdb_is_down():
    service, sw = _setup()
    a, db, clock = _clocked(service, sw, 10)
    db.down = True
    sw.flows.clear()  # ovs-vswitchd restarted: the switch reconnects with an empty table
    a.attach(sw)
    clock.now += 10  # and the audit is due, which reads OVSDB too
    a.step()
    assert len(sw.flows) == DEMO_FLOWS and a.status.in_sync
    assert not a.status.ovsdb_connected and "ovsdb-server" in a.status.ovsdb_error
    db.down = False
    clock.now += 1  # the retry is due
    a.step()
    assert a.status.ovsdb_connected and not a.status.ovsdb_error and a.status.in_sync


def test_a_lost_ovsdb_session_is_reported_at_once_and_its_return_too():
    service, sw = _setup()
    a, db, clock = _clocked(service, sw, 60)
    assert a.status.ovsdb_connected and a._until_due() <= 1.0  # it looks every second
    db.down = True  # ovsdb-server stopped; nothing needs writing, no audit is due
    clock.now += 1
    a.step()
    assert not a.status.ovsdb_connected and "lost the connection" in a.status.ovsdb_error
    db.down = False
    clock.now += 1
    a.step()
    assert a.status.ovsdb_connected and not a.status.ovsdb_error


class Impostor(FakeSwitch):
    """A bridge elsewhere given this hypervisor's datapath id: it cannot know br-int's MAC."""

    address = "192.0.2.66:51234"

    def local_mac(self):
        return "0a:00:00:00:00:66"


def test_a_connection_that_is_not_br_int_is_refused_and_named_and_the_real_one_stays():
    service, sw = _setup()
    a, _, clock = _clocked(service, sw, 60)
    assert a.status.switch_verified and a.switch is sw and len(sw.flows) == DEMO_FLOWS
    clock.now += 10  # past the grace of br-int's freshly written MAC
    rogue = Impostor()
    a.attach(rogue)
    a.step()
    assert a.switch is sw and rogue.closed and not rogue.flows
    assert a.status.switch_connected and a.status.in_sync and a.status.refused_total == 1
    refused = a.status.refused["192.0.2.66"]
    assert refused["count"] == 1 and "0a:00:00:00:00:66" in refused["why"]


def test_the_same_bridge_dialling_again_replaces_its_stale_connection():
    service, sw = _setup()
    a, _, _ = _clocked(service, sw, 60)
    again = FakeSwitch(dict(sw.ofports), ovsdb=sw.ovsdb)  # same OVSDB: same br-int MAC
    again.flows = dict(sw.flows)
    a.attach(again)
    a.step()
    assert a.switch is again and sw.closed and a.status.refused_total == 0
    assert again.flow_mods_sent == 0 and a.status.in_sync


def test_a_switch_that_has_not_taken_its_new_mac_yet_is_hung_up_on_not_called_an_intruder():
    service, sw = _setup()
    a, _, clock = _clocked(service, sw, 60)
    stale = Impostor()  # as br-int looked before netvirt set its MAC, a moment ago
    a.attach(stale)
    a.step()
    assert stale.closed and a.status.refused_total == 0 and a.switch is sw


def test_unverifiable_while_ovsdb_was_never_read_then_checked_once_it_is():
    service, sw = _setup()
    _clocked(service, sw, 60)  # an earlier controller gave br-int its MAC
    db, clock = sw.ovsdb, Clock()
    db.down = True  # this controller starts while OVSDB cannot be reached
    a = HypervisorAgent("hv1", service, audit_interval=60, ovsdb_factory=lambda ep: db,
                        clock=clock)
    rogue = Impostor(dict(sw.ofports))
    a.attach(rogue)
    a.step()
    # nothing to check against: taken, unverified, so that a switch that reconnected empty
    # still gets its flows
    assert a.switch is rogue and not a.status.switch_verified and len(rogue.flows) == DEMO_FLOWS
    db.down = False
    clock.now += 1  # the OVSDB retry is due
    a.step()
    assert a.switch is None and rogue.closed and a.status.refused_total == 1
    a.attach(sw)
    a.step()
    assert a.switch is sw and a.status.switch_verified and a.status.in_sync
