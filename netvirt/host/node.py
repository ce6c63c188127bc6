"""`netvirt node`: the agent on each hypervisor for what only the hypervisor can do.

The controller owns OpenFlow and OVSDB; what they cannot reach (tap devices and tc
objects through netlink, the kernel's capabilities, which guests are present) is done
here.  Like ovn-controller, the node talks to nothing but its hypervisor's own OVSDB: it
reads its desired state there (the controller already writes every VM port's row) and
reports what it observed there (Open_vSwitch:external_ids, which the controller's OVSDB
connection already reads).  So the node needs no address of the controller, no
credentials of its own and no new port, and works while the controller is down.

It reconciles the way the switch agents do: read what the hypervisor has, diff against
what it should have, apply only the difference, read back.  A restart with nothing
changed writes nothing.  Its state is the kernel report (pipeline/rows.py keys), the VM
devices' tc (to_vm QoS, host/qos.py: the controller writes the policies into br-int's row)
and the VM ports' devices: a guest's device deleted and made again under the same name (a VM
restarted, the lab's `lab up`) is not reopened by the userspace ovs-vswitchd, whose port
then carries nothing while it looks up; the node sees that no packet socket reads the
device (what the kernel says, not a record of its own that could be taken before the
device changed) and adds the port again.  On the userspace datapath it also puts back the
tunnel neighbours (host/tunnel_neighbours.py), which ovs-vswitchd flushes every time a
device comes or goes.  It makes a pass every interval and whenever a device appears or goes (netlink link events).  Taps
(the KVM issue) are more of the same.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

from netvirt import __version__
from netvirt.errors import NodeError, OvsdbError
from netvirt.host import kernel, tc, tunnel_neighbours
from netvirt.host.qos import REPORT_SECONDS, QosPass
from netvirt.pipeline.layout import INT_BRIDGE, PHY_BRIDGE
from netvirt.pipeline.rows import DATAPATH_HINT_KEY, KERNEL_QDISCS_KEY, NODE_KEY, PortRow

log = logging.getLogger(__name__)
SETTLE_SECONDS = 1.0
# how often a waiting node looks at br-int's QoS word in its OVSDB (in memory: the IDL
# follows the server), so that a policy applied reaches tc within this, not an interval
WATCH_SECONDS = 0.25


def kernel_report() -> dict[str, str]:
    """What this hypervisor's kernel can do, as the node reports it."""
    return {DATAPATH_HINT_KEY: kernel.datapath_hint(),
            KERNEL_QDISCS_KEY: kernel.features_string(kernel.probe_qdiscs()),
            NODE_KEY: __version__}


def unread_ports(rows, ofports: dict[str, int], devices: dict[str, int],
                 bound: set[int]) -> list[PortRow]:
    """The VM ports whose device ovs-vswitchd does not read.  ``ofports``: the ofport OVSDB
    shows for each port; ``devices``: name -> ifindex of the devices that exist; ``bound``:
    the ifindexes a packet socket is bound to.  A port with an ofport was opened, and the
    userspace datapath bound a packet socket to its device then; if the device there now
    has none, it is another device made under that name since (a guest restarted, the
    lab's `lab up`), which ovs-vswitchd never reopens by itself.  A port without an ofport
    is not open yet (or could not be opened: OVSDB's error says why), and a port without
    a device has nothing to open."""
    return [r for r in rows if ofports.get(r.name, 0) > 0
            and (ifindex := devices.get(r.name)) is not None and ifindex not in bound]


def _userspace(state) -> bool:
    return any(b.name == INT_BRIDGE and b.datapath_type == "netdev" for b in state.bridges)


def vm_ports(state) -> list[PortRow]:
    """The ports on br-int that are VM devices on this host (not OVS-made ones)."""
    return [p for p in state.ports if p.bridge == INT_BRIDGE and p.type == ""
            and "iface-id" in dict(p.external_ids)]


def report_changes(want: dict[str, str], have: dict[str, str]) -> dict[str, str]:
    """The keys of ``want`` that ``have`` lacks or holds otherwise; others' keys are not
    ours to touch."""
    return {k: v for k, v in want.items() if have.get(k) != v}


class NodeAgent:
    def __init__(self, ovsdb, interval: float = 5.0, report=kernel_report,
                 ifindexes=kernel.ifindexes, bound=kernel.packet_socket_devices,
                 neighbours=None, kernel_neighbours=tunnel_neighbours.kernel_neighbours,
                 kernel_tc=None):
        self.ovsdb = ovsdb  # an OvsdbDriver of this hypervisor's own OVSDB
        self.interval = interval
        self._report = report
        self._ifindexes = ifindexes
        self._bound = bound
        self._neighbours = neighbours  # a TunnelNeighbours (None: not this node's job)
        self._kernel_neighbours = kernel_neighbours
        self._want: dict[str, str] | None = None  # probed once: the kernel does not change
        self.qos = QosPass(ovsdb, kernel_tc or tc.KernelTc())
        self.passes = 0
        self._stop = threading.Event()
        self._wake = threading.Event()

    def reconcile_once(self) -> int:
        """One pass: returns the number of changes made (0 when all was as it should be)."""
        if self._want is None:
            self._want = self._report()
        self.ovsdb.connect()
        changes = report_changes(self._want, self.ovsdb.external_ids())
        if changes:
            self.ovsdb.set_external_ids(changes)
            left = report_changes(self._want, self.ovsdb.external_ids())
            if left:
                raise NodeError(f"OVSDB at {self.ovsdb.endpoint} does not hold what was "
                                f"written: {sorted(left)}")
        state = self.ovsdb.read()
        # the VM ports, their ofports and their devices, read once for both jobs below
        rows = vm_ports(state)
        names = [r.name for r in rows]
        ofports = self.ovsdb.ofports(names) if rows else {}
        devices = self._ifindexes(names) if rows else {}
        readd = self._unread_ports(state, rows, ofports, devices)
        for row in readd:
            log.warning("node: ovs-vswitchd does not read %s (the device was made again under "
                        "its name): adding its port again", row.name)
            self.ovsdb.readd_port(row)
        restored = []  # first: a tunnel without its neighbour carries nothing meanwhile
        if self._neighbours is not None and _userspace(state):
            restored = self._neighbours.restore(self._kernel_neighbours(PHY_BRIDGE))
        # a port re-added just now is not open yet, whatever OVSDB still says of it
        again = {r.name for r in readd}
        opened = {n: i for n, i in devices.items() if ofports.get(n, 0) > 0 and n not in again}
        try:
            shaped = self.qos.run(opened, "netem" in self._want[KERNEL_QDISCS_KEY].split(","))
        except NodeError as e:  # reported, and tried again at the next pass
            log.warning("node: QoS: %s", e)
            shaped = []
        self.passes += 1
        done = (sorted(changes) + [f"re-added {r.name}" for r in readd] + shaped
                + [f"tunnel neighbour {ip} put back" for ip in restored])
        # neighbour events wake it often: quiet passes after the first go to the debug log
        log.log(logging.INFO if done or self.passes == 1 else logging.DEBUG,
                "node: pass %d: %d change(s)%s", self.passes, len(done),
                f" ({', '.join(done)})" if done else "")
        return len(done)

    def _unread_ports(self, state, rows, ofports, devices) -> list[PortRow]:
        # Only the userspace datapath reads devices through packet sockets; the kernel
        # datapath takes a device's port away with the device.
        if not _userspace(state) or not rows:
            return []
        return unread_ports(rows, ofports, devices, self._bound())

    def _wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True if woken by an event, by new QoS in OVSDB or by a
        port of a policy that ovs-vswitchd opened meanwhile."""
        end = time.monotonic() + seconds
        qos = self._qos_watch()
        while (left := end - time.monotonic()) > 0:
            if self._wake.wait(min(left, WATCH_SECONDS)):
                return True
            if self._qos_watch() != qos:
                return True
        return False

    def _qos_watch(self) -> tuple:
        """br-int's QoS word, and the ofports of the devices the last pass found with a
        policy but no open port (the IDL's, in memory)."""
        waiting = sorted(self.qos.waiting)
        return self.ovsdb.qos_specs(), tuple(sorted(self.ovsdb.ofports(waiting).items()))

    def run(self) -> int:
        def stop(*_):
            self._stop.set()
            self._wake.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        kernel.watch_links(self._wake.set)
        follow_up = False
        while not self._stop.is_set():
            try:
                self.reconcile_once()
                # after an event, once more a moment later: ovs-vswitchd flushes its tunnel
                # neighbours when it gets to the same event, which may be after this pass
                wait = SETTLE_SECONDS if follow_up else self.interval
                if self.qos.reporting:  # the qdiscs' counters are reported this often
                    wait = min(wait, REPORT_SECONDS)
            except (OvsdbError, NodeError) as e:
                log.warning("node: %s; retrying in 1s", e)
                wait = 1.0
            follow_up = self._wait(wait) and not self._stop.is_set()
            self._wake.clear()
        self.ovsdb.close()
        self.qos.kernel.close()
        return 0
