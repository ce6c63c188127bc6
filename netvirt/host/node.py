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
changed writes nothing.  Today its state is the kernel report (pipeline/rows.py keys);
taps and tc (the KVM and QoS issues) are more of the same.
"""
from __future__ import annotations

import logging
import signal
import threading

from netvirt import __version__
from netvirt.errors import NodeError, OvsdbError
from netvirt.host import kernel
from netvirt.pipeline.rows import DATAPATH_HINT_KEY, KERNEL_QDISCS_KEY, NODE_KEY

log = logging.getLogger(__name__)


def kernel_report() -> dict[str, str]:
    """What this hypervisor's kernel can do, as the node reports it."""
    return {DATAPATH_HINT_KEY: kernel.datapath_hint(),
            KERNEL_QDISCS_KEY: kernel.features_string(kernel.probe_qdiscs()),
            NODE_KEY: __version__}


def report_changes(want: dict[str, str], have: dict[str, str]) -> dict[str, str]:
    """The keys of ``want`` that ``have`` lacks or holds otherwise; others' keys are not
    ours to touch."""
    return {k: v for k, v in want.items() if have.get(k) != v}


class NodeAgent:
    def __init__(self, ovsdb, interval: float = 30.0, report=kernel_report):
        self.ovsdb = ovsdb  # an OvsdbDriver of this hypervisor's own OVSDB
        self.interval = interval
        self._report = report
        self._want: dict[str, str] | None = None  # probed once: the kernel does not change
        self.passes = 0
        self._stop = threading.Event()

    def reconcile_once(self) -> int:
        """One pass: returns the number of keys written (0 when all was as it should be)."""
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
        self.passes += 1
        log.info("node: pass %d: %d change(s)%s", self.passes, len(changes),
                 f" ({', '.join(sorted(changes))})" if changes else "")
        return len(changes)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        while not self._stop.is_set():
            try:
                self.reconcile_once()
                wait = self.interval
            except (OvsdbError, NodeError) as e:
                log.warning("node: %s; retrying in 1s", e)
                wait = 1.0
            self._stop.wait(wait)
        self.ovsdb.close()
        return 0
