"""One reconciler per hypervisor: read actual -> diff -> apply the minimal change -> record.

The agent's thread is the only one that changes the agent's state or talks to its switch and
its OVSDB, as OVN's ofctrl loop owns its connection.  Other threads (os-ken's, the API's,
the service's) only put events on its queue: a switch attached or gone, a port event, a
flow removed, "the config changed".  So no event can land between a read and the flag that
read resets: it waits in the queue and is taken at the next turn.

A turn takes every queued event, runs the audit if its deadline has passed (re-read the
switch and OVSDB; the deadline is fixed, so a steady stream of events does not postpone
it), and then a pass if anything asked for one.  OVSDB and OpenFlow are reconciled
independently: an OVSDB server that is down is reported and retried every second, and does
not stop the flows of a switch that is connected from being repaired.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netvirt.errors import NetvirtError, OvsdbError
from netvirt.gcpause import gc_paused
from netvirt.overlay.ovsdb import compile_ovsdb, is_bridge_mac, new_bridge_mac
from netvirt.pipeline.layout import INT_BRIDGE
from netvirt.pipeline.stages import switch_learned
from netvirt.reconcile import diff
from netvirt.reconcile.compiler import Compiler
from netvirt.reconcile.diff import InstalledFlow
from netvirt.reconcile.drivers import OvsdbDriverProtocol, SwitchDriver
from netvirt.reconcile.ovsdb_plan import plan_rows
from netvirt.topology.inventory import Inventory

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
WATCH_SECONDS = 1.0  # how often the OVSDB session is looked at: a lost one shows within this
# A switch that just got its MAC written may still show its old one: it is hung up on
# without being called an intruder, and dials again within a second.
MAC_GRACE_SECONDS = 5.0
REFUSED_KEPT = 5  # addresses status remembers refused connections of


@dataclass
class AgentStatus:
    ovsdb_connected: bool = False
    switch_connected: bool = False
    switch_connected_at: float = 0.0  # time.time() of the last connect
    switch_address: str = ""  # where the attached connection comes from
    # whether the attached switch proved it is this hypervisor's br-int (its LOCAL MAC is
    # the one OVSDB gives br-int); False only while OVSDB could not be read to check
    switch_verified: bool = False
    # connections refused, by the address they came from: {"count", "last", "why"}
    refused: dict = field(default_factory=dict)
    refused_total: int = 0
    in_sync: bool = False
    applied_revision: int = 0
    desired_flows: int = 0
    installed_flows: int = 0
    flow_mods_sent: int = 0
    group_mods_sent: int = 0
    reconciles: int = 0
    audits: int = 0
    last_reconcile_seconds: float = 0.0
    last_error: str = ""  # the switch's side; "" when the last pass succeeded
    ovsdb_error: str = ""  # OVSDB's side, kept apart: it fails and recovers on its own
    datapath_type: str = ""
    port_errors: dict = field(default_factory=dict)  # interface -> why OVS cannot open it
    kernel_qdiscs: list | None = None  # as the hypervisor reports them; None = unknown
    node: str | None = None  # the version its node agent reported; None: no node has
    bridges: list = field(default_factory=list)  # bridges verified present in OVSDB
    ports_down: list = field(default_factory=list)  # TENANT/PORT with no carrier or no ofport
    reconcile_seconds_total: float = 0.0
    last_ovsdb_seconds: float = 0.0  # the OVSDB part of the last pass that wrote anything


class HypervisorAgent:
    def __init__(self, name: str, service, audit_interval: float,
                 ovsdb_factory: Callable[[str], OvsdbDriverProtocol],
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.service = service
        self.audit_interval = audit_interval
        self.status = AgentStatus()
        self._clock = clock
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._port_seq = 0  # port events put so far (any thread; under _seq_lock)
        self._seq_lock = threading.Lock()
        self._mirror_lock = threading.Lock()  # _installed is copied by plan requests
        # -- owned by the agent's thread ------------------------------------------------
        self.switch: SwitchDriver | None = None
        self._candidates: list[SwitchDriver] = []  # connections not checked yet
        self._unsaved: dict = {}  # learned neighbours not written to OVSDB yet
        self._bridge_mac: str | None = None  # br-int's MAC as its OVSDB has it
        self._new_mac = new_bridge_mac()  # what it gets if it has none
        self._mac_written_at = float("-inf")  # clock() when we last set it
        self._refused_logged: dict[str, float] = {}  # address -> clock() of its last warning
        self.inventory = Inventory()  # replaced, never changed in place: others read it
        self._dirty = True  # a pass is wanted
        self._read_flows = True  # re-read the switch's flows and groups
        self._read_ports = True  # re-read the switch's ports
        self._ports_read_seq = 0  # port events up to this one are older than the last read
        self._audit_ovsdb = True  # compare OVSDB row by row, not with our last write
        self._next_audit = clock() + audit_interval
        self._retry_at = 0.0  # after a failure: no pass before this
        self._ovsdb_retry_at = 0.0
        self._installed: dict[tuple, InstalledFlow] = {}
        self._installed_groups: set[int] = set()
        self._installed_meters: dict = {}  # meter id -> Meter, as the switch has them
        self.last_desired: dict[tuple, object] = {}  # key -> Flow, from the last compile
        self._compiler = Compiler()
        self._expect_removed: set[tuple] = set()
        self._stopping = False
        self._ovsdb_factory = ovsdb_factory
        self._ovsdb: OvsdbDriverProtocol | None = None
        self._ovsdb_done_rev = -1
        self._ovsdb_applied = None  # the OvsdbState last made true on the switch
        # what the node agent reports of its VM devices' tc (host/qos.py), as parsed; kept
        # out of AgentStatus: it is as large as the hypervisor's policies and status is
        # polled
        self.node_qos: dict = {}
        self._node_qos_raw: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"agent-{name}", daemon=True)

    # -- events (any thread) -----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._events.put(("stop",))
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._ovsdb:
            self._ovsdb.close()

    def mark_dirty(self, *, reread: bool = False) -> None:
        self._events.put(("reread",) if reread else ("dirty",))

    def attach(self, switch: SwitchDriver) -> None:
        self._events.put(("attach", switch))

    def detach(self, switch: SwitchDriver) -> None:
        """``switch``'s connection ended (the attached one, a candidate, or one refused)."""
        switch.abort("the switch disconnected")  # wakes a request the agent waits on
        self._events.put(("detach", switch))

    def port_changed(self, name: str, port: tuple[int, bool] | None) -> None:
        with self._seq_lock:
            self._port_seq += 1
            self._events.put(("port", self._port_seq, name, port))

    def flow_removed(self, key: tuple) -> None:
        self._events.put(("removed", key))

    def learned(self, neighbours: dict) -> None:
        """MACs heard on an external network: {(its VNI, IP): MAC}."""
        self._events.put(("learned", neighbours))

    def health(self, down: frozenset[str]) -> None:
        """The load balancer members whose health checks now fail (their origins)."""
        self._events.put(("health", down))

    def mirror(self) -> tuple[dict[tuple, InstalledFlow], set[int], dict]:
        """A copy of what we believe is installed (for plans; may be read from any thread):
        flows by key, group ids, meters by id."""
        with self._mirror_lock:
            return (dict(self._installed), set(self._installed_groups),
                    dict(self._installed_meters))

    # -- the agent's thread --------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            self.step(wait=self._until_due())

    def _until_due(self) -> float:
        now = self._clock()
        due = self._next_audit if not self._dirty else max(self._retry_at, now)
        if self._ovsdb_retry_at:
            due = min(due, self._ovsdb_retry_at)
        if self._ovsdb is not None:
            due = min(due, now + WATCH_SECONDS)
        return max(0.0, due - now)

    def step(self, wait: float = 0.0) -> None:
        """One turn: take the queued events (waiting up to ``wait`` seconds for the first),
        audit if the deadline has passed, and run a pass if anything asks for one."""
        self.take_events(wait)
        if self._stopping:
            return
        self._watch_ovsdb()
        now = self._clock()
        if now >= self._next_audit:
            # against the switch's and OVSDB's real state; the next one is due a fixed
            # interval from now, whatever events come meanwhile
            self._read_flows = self._audit_ovsdb = self._dirty = True
            self._next_audit = now + self.audit_interval
            self.status.audits += 1
        if self._ovsdb_retry_at and now >= self._ovsdb_retry_at:
            self._dirty = True
        if not self._dirty or now < self._retry_at:
            return
        self._dirty = False
        try:
            self._pass()
            self.status.last_error = ""
        except NetvirtError as e:
            self._failed(str(e))
        except Exception as e:  # keep the agent alive; report and retry
            log.exception("%s: reconcile failed", self.name)
            self._failed(f"{type(e).__name__}: {e}")
        self.service.notify()

    def take_events(self, wait: float = 0.0) -> None:
        """Handle the queued events (waiting up to ``wait`` seconds for the first)."""
        try:
            ev = self._events.get(timeout=wait) if wait > 0 else self._events.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(ev)
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, ev: tuple) -> None:
        kind = ev[0]
        if kind == "stop":
            self._stopping = True
        elif kind == "dirty":
            self._dirty = True
        elif kind == "reread":
            self._read_flows = self._dirty = True
        elif kind == "attach":
            # checked at the next pass: a connection is taken only once it proved which
            # bridge it is, and never replaces one that did unless it proves it too
            self._candidates.append(ev[1])
            self._dirty = True
            self._retry_at = 0.0
        elif kind == "detach":
            if ev[1] in self._candidates:
                self._candidates.remove(ev[1])
            if self.switch is ev[1]:
                self.switch = None
                self.status.switch_connected = self.status.in_sync = False
                self.status.switch_verified = False
        elif kind == "port":
            _, seq, name, port = ev
            if seq <= self._ports_read_seq:
                return  # the port list read since then already says it
            inventory = self.inventory.with_port(name, port)
            if inventory != self.inventory:
                # No debounce: a pass recompiles only the networks whose ports changed,
                # and the events queued while it waits for its barrier go to the next.
                self.inventory = inventory
                self._dirty = True
        elif kind == "learned":
            fresh = {k: mac for k, mac in ev[1].items() if self.inventory.neighbours.get(k) != mac}
            if fresh:
                log.info("%s: learned %s", self.name, ", ".join(
                    f"{ip} is {mac}" for (_, ip), mac in sorted(fresh.items())))
                self.inventory = self.inventory.with_neighbours(fresh)
                self._unsaved.update(fresh)
                self._dirty = True
        elif kind == "health":
            if ev[1] != self.inventory.down_members:
                self.inventory = self.inventory.with_down_members(ev[1])
                self._dirty = True
        elif kind == "removed":
            key = ev[1]
            if key in self._expect_removed:
                self._expect_removed.discard(key)
                return
            if self.status.in_sync:  # once per burst: a del-flows removes every flow at once
                log.warning("%s: flow %s (table, priority, cookie) was removed behind our "
                            "back; repairing", self.name, key)
            self.status.in_sync = False
            self._read_flows = self._dirty = True

    def _failed(self, msg: str) -> None:
        self.status.last_error = msg
        self.status.in_sync = False
        # Part of a plan may have been applied: the mirror no longer says what the switch
        # has.  Read it again rather than re-send (re-adding a group that exists fails).
        self._read_flows = self._dirty = True
        self._retry_at = self._clock() + RETRY_SECONDS
        log.warning("%s: %s (retrying in %.0fs)", self.name, msg, RETRY_SECONDS)

    def reconcile_once(self) -> None:
        """Take the queued events, then make one pass (tests call it directly after
        queueing events; the agent's turn has taken them already)."""
        self.take_events(0)
        self._pass()

    def _pass(self) -> None:
        # A pass allocates tens of thousands of objects that live on (the mirror, encoded
        # flow mods) or die by reference count (os-ken messages): a collection in the middle
        # of it (80-150 ms at 1000 ports) would scan them all for nothing.
        with gc_paused():
            self._reconcile_once()

    def _reconcile_once(self) -> None:
        t0 = time.monotonic()
        rev, loaded, topo = self.service.snapshot()
        if self.name not in topo.hypervisors:
            return
        try:
            self._reconcile_ovsdb(rev, topo)
        except NetvirtError as e:  # reported; the flows go on without it
            self._ovsdb_failed(str(e))
        if self._unsaved and self.status.ovsdb_connected:
            try:
                self._ovsdb.save_neighbours(self._unsaved)
                self._unsaved = {}
            except OvsdbError as e:  # kept, and written at the next pass
                self._ovsdb_failed(str(e))
        if self.switch is not None and not self.status.switch_verified \
                and self._bridge_mac is not None:
            self._candidates.insert(0, self.switch)  # taken unchecked; check it now
        while self._candidates:
            self._check(self._candidates.pop(0))
        sw = self.switch
        if sw is None:
            return
        if self._read_flows:
            installed = {f.key: f for f in sw.read_flows()
                         if not switch_learned(f.table, f.priority)}
            groups, meters = sw.read_groups(), sw.read_meters()
            with self._mirror_lock:
                self._installed = installed
                self._installed_groups = groups
                self._installed_meters = meters
            self._expect_removed.clear()  # the table as read is the truth from here on
            self._read_flows, self._read_ports = False, True
        if self._read_ports:
            with self._seq_lock:
                before = self._port_seq
            ports = sw.read_ports()
            with self._seq_lock:
                after = self._port_seq
            self.inventory = Inventory.from_ports(ports, self.inventory.neighbours,
                                                  self.inventory.down_members)
            # Port events queued before the request are older than this list; one queued
            # while the list was on its way may be older or newer: read again, next pass,
            # until a read sees no event meanwhile.
            self._ports_read_seq = after
            self._read_ports = after != before
            self._dirty |= self._read_ports
        inventory = self.inventory
        desired = self._compiler.compile(topo, self.name, inventory)
        self.last_desired = desired.by_key
        plan = diff.plan(desired, self._installed, self._installed_groups,
                         self._installed_meters)
        if not plan.empty:
            log.info("%s: revision %d: %s", self.name, rev,
                     ", ".join(f"{t} +{a}/-{d}" for t, (a, d) in plan.per_table().items()) or
                     "groups only")
            self._expect_removed.update(f.key for f in plan.delete_flows)
            sw.apply(plan)
            self._record(plan)
        st = self.status
        st.flow_mods_sent, st.group_mods_sent = sw.flow_mods_sent, sw.group_mods_sent
        st.desired_flows, st.installed_flows = len(desired.flows), len(self._installed)
        st.applied_revision = rev
        # from the inventory this pass compiled with: a port that appeared since has no
        # flows yet, and is down until the next pass gives it some
        st.ports_down = [f"{r.tenant}/{r.port.name}" for r in topo.ports_on(self.name)
                         if not inventory.link_up.get(r.port.interface)]
        st.in_sync = (not self._read_ports  # ports as read may be stale
                      and self._installed.keys() == self.last_desired.keys()
                      and self._installed_meters.keys() == {m.meter_id for m in desired.meters})
        st.reconciles += 1
        st.last_reconcile_seconds = time.monotonic() - t0
        st.reconcile_seconds_total += st.last_reconcile_seconds

    def _check(self, sw: SwitchDriver) -> None:
        """Take ``sw`` as this hypervisor's switch if its LOCAL MAC is br-int's, as this
        hypervisor's OVSDB has it; else hang up on it.  A datapath id can be guessed (a
        bridge elsewhere given hv1's received hv1's flows), that MAC cannot.  While OVSDB
        was never read (it is down since the controller started) there is nothing to check
        against: the connection is taken unverified, as before, and checked once OVSDB is
        back, so that a switch that reconnected empty still gets its flows."""
        try:
            mac = sw.local_mac()
        except NetvirtError:
            return  # it went away meanwhile; its detach is queued
        want = self._bridge_mac
        if want is not None and mac != want:
            return self._refuse(sw, mac, want)
        if self.switch is not sw:
            if self.switch is not None:  # the same bridge dialled again: the old one is stale
                self.switch.close()
            self.switch = sw
            st = self.status
            st.switch_connected, st.in_sync = True, False
            st.switch_connected_at = time.time()
            st.switch_address = sw.address
            self._read_flows = self._read_ports = True  # reset the mirror
        self.status.switch_verified = want is not None
        if want is None:
            log.warning("%s: switch at %s taken without checking that it is this "
                        "hypervisor's br-int: its OVSDB has not been read yet", self.name,
                        sw.address)

    def _refuse(self, sw: SwitchDriver, mac: str | None, want: str) -> None:
        if self.switch is sw:
            self.switch = None
            self.status.switch_connected = self.status.in_sync = False
            self.status.switch_verified = False
        sw.close()
        now = self._clock()
        if now - self._mac_written_at < MAC_GRACE_SECONDS:
            log.info("%s: switch at %s has not taken br-int's new MAC yet; hung up, it will "
                     "dial again", self.name, sw.address)
            return
        why = (f"claimed {self.name}'s datapath id, but its bridge MAC {mac} is not "
               f"{self.name}'s br-int's ({want})")
        host = sw.address.rsplit(":", 1)[0]
        st = self.status
        st.refused_total += 1
        seen = st.refused.pop(host, {"count": 0})
        st.refused[host] = {"count": seen["count"] + 1,
                            "last": time.strftime("%Y-%m-%dT%H:%M:%S"), "why": why}
        st.refused = dict(list(st.refused.items())[-REFUSED_KEPT:])  # the latest addresses
        if now - self._refused_logged.get(host, float("-inf")) >= 60:
            self._refused_logged[host] = now
            log.warning("%s: switch at %s %s: refused (logged once a minute per address)",
                        self.name, sw.address, why)

    def _record(self, plan: diff.Plan) -> None:
        with self._mirror_lock:
            for f in plan.delete_flows + plan.replaced_flows:
                self._installed.pop(f.key, None)
            for f in plan.add_flows:
                self._installed[f.key] = InstalledFlow(int(f.table), f.priority, f.cookie,
                                                       f.match)
            self._installed_groups |= {g.group_id for g in plan.add_groups}
            self._installed_groups -= set(plan.delete_groups)
            for m in plan.add_meters + plan.modify_meters:
                self._installed_meters[m.meter_id] = m
            for i in plan.delete_meters:
                self._installed_meters.pop(i, None)

    def _watch_ovsdb(self) -> None:
        """A session that went down is reported at once, not at the next write: between
        revisions and audits nothing else would look.  The node's QoS report is taken
        here too: it changes without a revision."""
        if self._ovsdb is None or not self.status.ovsdb_connected:
            return
        if not self._ovsdb.connected():
            self._ovsdb_failed(f"lost the connection to OVSDB at {self._ovsdb.endpoint}; is "
                               f"ovsdb-server running there?")
            self.service.notify()
            return
        self._read_node_qos()

    def _read_node_qos(self) -> None:
        raw = self._ovsdb.qos_state()
        if raw == self._node_qos_raw:
            return
        try:
            report = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            report = None
        if not isinstance(report, dict):
            log.warning("%s: the node's QoS report in OVSDB is not a JSON object; ignored",
                        self.name)
            report = {}
        # what topo and /metrics read of each entry, or the entry is not shown
        self.node_qos = {k: v for k, v in report.items() if isinstance(v, dict)
                         and isinstance(v.get("origin"), str) and v["origin"].count("/") == 3
                         and isinstance(v.get("counters"), dict)
                         and isinstance(v.get("held"), list)}
        self._node_qos_raw = raw

    def _ovsdb_failed(self, msg: str) -> None:
        st = self.status
        if st.ovsdb_error != msg:
            log.warning("%s: %s (retrying every %.0fs; flows are reconciled meanwhile)",
                        self.name, msg, RETRY_SECONDS)
        st.ovsdb_connected, st.ovsdb_error = False, msg
        self._ovsdb_applied = None  # compare row by row once it is back
        self._ovsdb_retry_at = self._clock() + RETRY_SECONDS

    def _reconcile_ovsdb(self, rev: int, topo) -> None:
        # OVSDB is checked on every config revision, every audit and every retry, not on
        # every flow event.
        if self._ovsdb_done_rev == rev and not self._audit_ovsdb and not self._ovsdb_retry_at:
            return
        hv = topo.hypervisors[self.name]
        if self._ovsdb is None or self._ovsdb.endpoint != hv.ovsdb:
            if self._ovsdb:
                self._ovsdb.close()
            self._ovsdb = self._ovsdb_factory(hv.ovsdb)
        t0 = time.monotonic()
        self._ovsdb.connect()
        if not self._ovsdb.connected():  # the IDL keeps its last rows: do not trust them
            raise OvsdbError(f"no connection to OVSDB at {hv.ovsdb} (reconnecting); is "
                             f"ovsdb-server running there?")
        dp_type = hv.datapath_type or self._ovsdb.datapath_hint() or "system"
        have = self._ovsdb.bridge_mac(INT_BRIDGE)
        if is_bridge_mac(have):
            self._bridge_mac = have  # what OVSDB says is the truth, whoever set it
        mac = self._bridge_mac or self._new_mac
        state = compile_ovsdb(topo, self.name, dp_type, mac)
        full = self._audit_ovsdb or self._ovsdb_applied is None
        if full:  # what an earlier controller learned on the external networks
            saved = self._ovsdb.saved_neighbours()
            if any(self.inventory.neighbours.get(k) != mac for k, mac in saved.items()):
                self.inventory = self.inventory.with_neighbours(
                    {**saved, **self.inventory.neighbours})
        n = 0
        if state != self._ovsdb_applied or full:
            # Between audits our last write is what OVSDB has, as the flow mirror is what
            # the switch has: compare with it instead of reading every row back (40-60 ms
            # of IDL row access at 333 ports per hypervisor, for a one-port change).
            plan = plan_rows(state, self._ovsdb.read() if full else self._ovsdb_applied)
            if not plan.empty:
                n = self._ovsdb.apply(plan)
        if self._bridge_mac != mac:  # OVSDB holds it now: switches are checked against it
            self._bridge_mac, self._mac_written_at = mac, self._clock()
        st = self.status
        st.ovsdb_connected, st.ovsdb_error = True, ""
        self._ovsdb_retry_at = 0.0
        st.datapath_type = dp_type
        st.bridges = sorted(b.name for b in state.bridges)
        st.kernel_qdiscs = self._ovsdb.kernel_qdiscs()
        st.node = self._ovsdb.node_version()
        self._read_node_qos()
        if n:
            st.last_ovsdb_seconds = time.monotonic() - t0
            log.info("%s: OVSDB: %d change(s) in %.2fs", self.name, n, st.last_ovsdb_seconds)
        self._port_errors(state, full)
        self._ovsdb_done_rev = rev
        self._ovsdb_applied = state
        if full:
            self._audit_ovsdb = False

    def _port_errors(self, state, full: bool) -> None:
        # A VM's device may appear later (the guest is not started yet): report, not fail.
        # New ports may not be open yet (the driver does not wait for ovs-vswitchd); what
        # fails shows at the next audit, and until then such a port counts as down.
        st = self.status
        before = st.port_errors
        names = {p.name for p in state.ports}
        if full or self._ovsdb_applied is None:
            st.port_errors = self._ovsdb.port_errors(names)
        else:
            changed = names - {p.name for p in self._ovsdb_applied.ports & state.ports}
            st.port_errors = {name: why for name, why in before.items()
                              if name in names and name not in changed}
            st.port_errors.update(self._ovsdb.port_errors(changed))
        for name, why in sorted(st.port_errors.items()):
            if name not in before:
                log.warning("%s: interface %s is not usable yet: %s", self.name, name, why)
