"""One reconciler per hypervisor: read actual -> diff -> apply the minimal change -> record.

Event handlers only call mark_dirty()/need_read; this thread alone talks to the switch and to
OVSDB, so there is never more than one writer per hypervisor.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netvirt.controller.ovsdb_driver import OvsdbDriver
from netvirt.controller.ovsdb_state import compile_ovsdb
from netvirt.errors import NetvirtError
from netvirt.gcpause import gc_paused
from netvirt.reconcile import diff
from netvirt.reconcile.desired import Compiler
from netvirt.reconcile.diff import InstalledFlow
from netvirt.reconcile.drivers import OvsdbDriverProtocol, SwitchDriver
from netvirt.topology.inventory import Inventory

log = logging.getLogger(__name__)


@dataclass
class AgentStatus:
    ovsdb_connected: bool = False
    switch_connected: bool = False
    switch_connected_at: float = 0.0  # time.time() of the last connect
    in_sync: bool = False
    applied_revision: int = 0
    desired_flows: int = 0
    installed_flows: int = 0
    flow_mods_sent: int = 0
    group_mods_sent: int = 0
    reconciles: int = 0
    last_reconcile_seconds: float = 0.0
    last_error: str = ""
    datapath_type: str = ""
    port_errors: dict = field(default_factory=dict)  # interface -> why OVS cannot open it
    kernel_qdiscs: list | None = None  # as the hypervisor reports them; None = unknown
    bridges: list = field(default_factory=list)  # bridges verified present in OVSDB
    ports_down: list = field(default_factory=list)  # TENANT/PORT with no carrier or no ofport
    reconcile_seconds_total: float = 0.0
    last_ovsdb_seconds: float = 0.0  # the OVSDB part of the last pass that wrote anything


class HypervisorAgent:
    def __init__(self, name: str, service, audit_interval: float,
                 ovsdb_factory: Callable[[str], OvsdbDriverProtocol] = OvsdbDriver):
        self.name = name
        self.service = service
        self.audit_interval = audit_interval
        self.status = AgentStatus()
        self.switch: SwitchDriver | None = None
        self.inventory = Inventory()
        self.need_read = True  # re-read the switch's flows, groups and ports
        self._read_ports = True  # re-read the switch's ports (need_read implies it)
        self._port_events = 0  # PortStatus messages handled so far
        self._audit_ovsdb = True  # compare OVSDB row by row, not with our last write
        self._installed: dict[tuple, InstalledFlow] = {}
        self._installed_groups: set[int] = set()
        self.last_desired: dict[tuple, object] = {}  # key -> Flow, from the last compile
        self._compiler = Compiler()
        self._expect_removed: set[tuple] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ovsdb_factory = ovsdb_factory
        self._ovsdb: OvsdbDriverProtocol | None = None
        self._ovsdb_done_rev = -1
        self._ovsdb_applied = None  # the OvsdbState last made true on the switch
        self._thread = threading.Thread(target=self._run, name=f"agent-{name}", daemon=True)

    # -- events (any thread) -----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if self._ovsdb:
            self._ovsdb.close()

    def mark_dirty(self, *, reread: bool = False) -> None:
        if reread:
            self.need_read = True
        self._wake.set()

    def attach(self, switch: SwitchDriver) -> None:
        self.switch = switch
        self.status.switch_connected = True
        self.status.switch_connected_at = time.time()
        self.status.in_sync = False
        self.mark_dirty(reread=True)  # the mirror is reset on every (re)connect

    def detach(self) -> None:
        if self.switch is not None:
            self.switch.abort("the switch disconnected")
        self.switch = None
        self.status.switch_connected = False
        self.status.in_sync = False

    def port_changed(self, name: str, port: tuple[int, bool] | None) -> None:
        self._port_events += 1  # counted even when it changes nothing: see _reconcile_once
        inventory = self.inventory.with_port(name, port)
        if inventory == self.inventory:
            return
        self.inventory = inventory
        # No debounce: a pass recompiles only the networks whose ports changed, and the
        # events that arrive while it waits for its barrier are all taken by the next one.
        self.mark_dirty()

    def flow_removed(self, key: tuple) -> None:
        if key in self._expect_removed:
            self._expect_removed.discard(key)
            return
        if self.status.in_sync:  # once per burst: a del-flows removes every flow at once
            log.warning("%s: flow %s (table, priority, cookie) was removed behind our back; "
                        "repairing", self.name, key)
        self.status.in_sync = False
        self.mark_dirty(reread=True)

    def mirror(self) -> tuple[dict[tuple, InstalledFlow], set[int]]:
        """A copy of what we believe is installed (for plans; may be read from any thread)."""
        return dict(self._installed), set(self._installed_groups)

    # -- the reconciler thread -----------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.audit_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not woke:  # periodic audit against the switch's and OVSDB's real state
                self.need_read = self._audit_ovsdb = True
            try:
                self.reconcile_once()
                self.status.last_error = ""
                self.service.notify()
            except NetvirtError as e:
                self._failed(str(e))
            except Exception as e:  # keep the agent alive; report and retry
                log.exception("%s: reconcile failed", self.name)
                self._failed(f"{type(e).__name__}: {e}")

    def _failed(self, msg: str) -> None:
        self.status.last_error = msg
        self.status.in_sync = False
        # Part of a plan may have been applied: the mirror no longer says what the switch
        # has.  Read it again rather than re-send (re-adding a group that exists fails).
        self.need_read = True
        log.warning("%s: %s (retrying in 1s)", self.name, msg)
        self._stop.wait(1.0)
        self._wake.set()

    def reconcile_once(self) -> None:
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
        self._reconcile_ovsdb(rev, topo)
        sw = self.switch
        if sw is None:
            return
        if self.need_read:
            self._installed = {f.key: f for f in sw.read_flows()}
            self._installed_groups = sw.read_groups()
            self._expect_removed.clear()  # the table as read is the truth from here on
            self.need_read, self._read_ports = False, True
        if self._read_ports:
            events = self._port_events
            self.inventory = Inventory.from_ports(sw.read_ports())
            # A PortStatus handled while the list was on its way may be newer than the list
            # that just replaced what it did (it follows the list on the connection, but
            # os-ken's thread can handle it before this one stores the list): read the
            # ports again, next pass, until a read sees no event meanwhile.
            self._read_ports = self._port_events != events
            if self._read_ports:
                self._wake.set()
        inventory = self.inventory  # one snapshot: port events may replace it meanwhile
        desired = self._compiler.compile(topo, self.name, inventory)
        self.last_desired = desired.by_key
        plan = diff.plan(desired, self._installed, self._installed_groups)
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
        st.in_sync = (self.switch is sw and not self._read_ports  # ports as read may be stale
                      and self._installed.keys() == self.last_desired.keys())
        st.reconciles += 1
        st.last_reconcile_seconds = time.monotonic() - t0
        st.reconcile_seconds_total += st.last_reconcile_seconds

    def _record(self, plan: diff.Plan) -> None:
        for f in plan.delete_flows + plan.replaced_flows:
            self._installed.pop(f.key, None)
        for f in plan.add_flows:
            self._installed[f.key] = InstalledFlow(int(f.table), f.priority, f.cookie, f.match)
        self._installed_groups |= {g.group_id for g in plan.add_groups}
        self._installed_groups -= set(plan.delete_groups)

    def _reconcile_ovsdb(self, rev: int, topo) -> None:
        # OVSDB is checked on every config revision and every audit, not on every flow event.
        if self._ovsdb_done_rev == rev and not self._audit_ovsdb:
            return
        hv = topo.hypervisors[self.name]
        if self._ovsdb is None or self._ovsdb.endpoint != hv.ovsdb:
            if self._ovsdb:
                self._ovsdb.close()
            self._ovsdb = self._ovsdb_factory(hv.ovsdb)
        t0 = time.monotonic()
        try:
            self._ovsdb.connect()
            dp_type = hv.datapath_type or self._ovsdb.datapath_hint() or "system"
            state = compile_ovsdb(topo, self.name, dp_type)
            full = self._audit_ovsdb or self._ovsdb_applied is None
            if state == self._ovsdb_applied and not full:
                # A revision that changes nothing here (most do, for most hypervisors).
                self._ovsdb_done_rev = rev
                return
            # Between audits our last write is what OVSDB has, as the flow mirror is what the
            # switch has: compare with it instead of reading every row back (40-60 ms of
            # IDL row access at 333 ports per hypervisor, for a one-port change).
            n = self._ovsdb.apply(state, None if full else self._ovsdb_applied)
        except NetvirtError:
            self.status.ovsdb_connected = False
            self._ovsdb_applied = None
            raise
        st = self.status
        st.ovsdb_connected = True
        st.datapath_type = dp_type
        st.bridges = sorted(b.name for b in state.bridges)
        st.kernel_qdiscs = self._ovsdb.kernel_qdiscs()
        if n:
            st.last_ovsdb_seconds = time.monotonic() - t0
            log.info("%s: OVSDB: %d change(s) in %.2fs", self.name, n, st.last_ovsdb_seconds)
        # A VM's device may appear later (the guest is not started yet): report, not fail.
        # New ports may not be open yet (see ovsdb_driver._NoWaitTransaction); what fails
        # shows at the next audit, and until then such a port counts as down.
        before = st.port_errors
        names = {p.name for p in state.ports}
        if full:
            st.port_errors = self._ovsdb.port_errors(names)
        else:
            changed = names - {p.name for p in self._ovsdb_applied.ports & state.ports}
            st.port_errors = {name: why for name, why in before.items()
                              if name in names and name not in changed}
            st.port_errors.update(self._ovsdb.port_errors(changed))
        for name, why in sorted(st.port_errors.items()):
            if name not in before:
                log.warning("%s: interface %s is not usable yet: %s", self.name, name, why)
        self._ovsdb_done_rev = rev
        self._ovsdb_applied = state
        if full:
            self._audit_ovsdb = False
