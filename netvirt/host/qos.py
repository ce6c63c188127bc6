"""The node agent's QoS pass: make each VM device's tc what the controller asked for in
br-int's OVSDB row (topology/qos.py), and report what the kernel holds.

The desired objects come from the policy and this kernel's qdiscs (no netem: the rate is
put in place and the rest reported as not enforced, never silently dropped); each device is
read back, diffed and changed only where it differs (host/tc.py), so a node restarted with
nothing changed sends no tc request.  A VM device with no policy loses netvirt's qdiscs (and
only those: a root qdisc of another handle is someone else's).

The report (Open_vSwitch:external_ids, QOS_STATE_KEY) says per device what is enforced,
what is not and why, and the qdiscs' counters.  Counters change with every packet: they are
written at most every REPORT_SECONDS, what the report says of the policy at once.

Reading a device back costs pyroute2 most of a millisecond (a class dump each, measured:
bench/qos.py), and the node is woken by every link and neighbour event: a pass whose
policies and devices are those it last verified only refreshes the counters (one qdisc
dump) until VERIFY_SECONDS have passed, when it reads, diffs and repairs everything again
(someone's `tc qdisc del` is undone within that).
"""
from __future__ import annotations

import json
import logging
import time

from netvirt.errors import NodeError
from netvirt.host import tc
from netvirt.qos.tc import OURS, plan
from netvirt.pipeline.rows import QOS_STATE_KEY
from netvirt.topology.qos import ToVm, decode_specs

log = logging.getLogger(__name__)
REPORT_SECONDS = 5.0
VERIFY_SECONDS = 30.0


def device_report(spec: ToVm, held: list[str], counters: dict, missing: list[str] = (),
                  why: str = "", error: str = "") -> dict:
    """What the node says of one device with a policy."""
    report = {"origin": spec.origin, "applied": list(spec), "held": held, "counters": counters}
    if missing:
        report["not_enforced"] = {"parts": list(missing), "why": why}
    if error:
        report["error"] = error
    return report


class QosPass:
    def __init__(self, ovsdb, kernel, clock=time.monotonic):
        self.ovsdb = ovsdb
        self.kernel = kernel  # a tc.KernelTc: read(indexes), counters(indexes), apply(...)
        self._clock = clock
        self._written: dict | None = None  # the report as OVSDB holds it
        self._written_at = float("-inf")
        self._verified: tuple | None = None  # (specs, devices, netem) of the last full pass
        self._verified_at = float("-inf")
        self._report_of: dict = {}  # the last full pass's report, and each device's index
        self.waiting: set[str] = set()  # devices with a policy whose port is not open yet

    def run(self, devices: dict[str, int], netem_ok: bool) -> list[str]:
        """One pass over the VM devices whose port ovs-vswitchd has opened (``devices``:
        name -> ifindex of those that exist); what it changed, for the log.  Not before OVS
        opened the port: ovs-vswitchd manages QoS on every port it
        opens, and finding a root qdisc it did not make (ours), it deletes it, once, as it
        configures the port; from then on it takes the device for one without QoS."""
        try:
            specs = decode_specs(self.ovsdb.qos_specs() or "{}")
        except ValueError as e:  # touch nothing on a word we cannot read
            raise NodeError(f"br-int's QoS in OVSDB at {self.ovsdb.endpoint}: {e}") from None
        now = self._clock()
        key = (specs, devices, netem_ok)
        if key == self._verified and now - self._verified_at < VERIFY_SECONDS:
            if now - self._written_at >= REPORT_SECONDS:
                self._report(self._counted())
            return []
        done, report = [], {}
        self.waiting = set(specs) - set(devices)
        for name in sorted(self.waiting):
            report[name] = device_report(specs[name], [], {}, specs[name].parts(),
                                         "ovs-vswitchd has not opened its port yet, or "
                                         "its device is gone")
            report[name]["waiting"] = True
        held = self.kernel.read(devices.values()) if devices else {}
        changed, shaped = set(), []
        for name, index in sorted(devices.items()):
            spec = specs.get(name)
            want, args, missing = tc.kernel_objects(spec, netem_ok) if spec else ((), {}, [])
            ops, error = plan(want, held[index][0]), ""
            try:
                self.kernel.apply(index, ops, args)
            except NodeError as e:
                error = str(e)
                log.warning("node: %s: %s", name, e)
            if ops:
                changed.add(index)
            done += [f"{name}: tc {op.action} {op.obj.kind}" for op in ops]
            if spec is not None:
                shaped.append((name, index, spec, missing, error))
        after = {**held, **self.kernel.read(changed)} if changed else held  # read back
        for name, index, spec, missing, error in shaped:
            objects, counters = after[index]
            report[name] = device_report(spec, [o.kind for o in objects if o.handle in OURS],
                                         counters, missing, "this kernel has no sch_netem",
                                         error)
        self._report(report)
        # a device that refused a request is tried again at the next pass, not in 30 s
        failed = any(error for *_, error in shaped)
        self._verified, self._verified_at = (None, now) if failed else (key, now)
        self._report_of = {name: (devices.get(name), r) for name, r in report.items()}
        return done

    @property
    def reporting(self) -> bool:
        """Whether a device has a policy here (whose counters the report carries)."""
        return bool(self._report_of)

    def _counted(self) -> dict:
        """The last full pass's report with the counters read now (qdiscs only)."""
        indexes = [i for i, _ in self._report_of.values() if i is not None]
        counters = self.kernel.counters(indexes) if indexes else {}
        return {name: {**r, "counters": counters.get(i, r["counters"])} if i is not None else r
                for name, (i, r) in self._report_of.items()}

    def _report(self, report: dict) -> None:
        def policy(r: dict) -> dict:
            return {k: {**v, "counters": None} for k, v in r.items()}

        if self._written is None:  # what an earlier run of the node left
            try:
                self._written = json.loads(self.ovsdb.external_ids().get(QOS_STATE_KEY, "{}"))
            except json.JSONDecodeError:
                self._written = {}
        now = self._clock()
        if report == self._written or (policy(report) == policy(self._written)
                                       and now - self._written_at < REPORT_SECONDS):
            return
        self.ovsdb.set_external_ids({QOS_STATE_KEY: json.dumps(report, sort_keys=True,
                                                               separators=(",", ":"))})
        self._written, self._written_at = report, now
