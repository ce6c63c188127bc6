"""tc on this hypervisor's devices through pyroute2: netvirt's qdiscs read back as records
(qos/tc.py), records turned into pyroute2 requests, and one device made to hold a policy.

Parameters are converted to the kernel's units with pyroute2's own helpers (the same ones
its tc plugins use when they encode a request), so that a dump gives back exactly what was
asked for: rates in bytes per second, htb's buckets and netem's times in scheduler ticks,
probabilities as fractions of 2^32.
"""
from __future__ import annotations

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink.rtnl.tcmsg.common import calc_xmittime, percent2u32, time2tick

from netvirt.errors import NodeError
from netvirt.qos.tc import OURS, TC_H_ROOT, TcObject, TcOp, shape
from netvirt.topology.qos import ToVm

NETEM_LIMIT = 1000  # packets netem holds while they wait out their delay (tc's default)


def kernel_objects(spec: ToVm, netem_ok: bool) -> tuple[tuple[TcObject, ...], dict, list[str]]:
    """The records a device should hold for ``spec``, in kernel units; the pyroute2
    arguments that make each (by handle: pyroute2 converts from these, so they are given
    as the policy says them, not converted back); and what of the policy this kernel
    cannot enforce."""
    objects, missing = shape(spec, netem_ok)
    out, args = [], {}
    for kind, handle, parent, p in objects:
        if kind == "htb":
            params = {"defcls": p["default"]}
            args[handle] = {"parent": parent, "default": p["default"]}
        elif kind == "htb-class":
            rate = p["rate"] // 8
            buf = calc_xmittime(rate, p["burst"])
            params = {"rate": rate, "ceil": rate, "buffer": buf, "cbuffer": buf}
            args[handle] = {"parent": parent, "rate": rate, "ceil": rate,
                            "burst": p["burst"], "cburst": p["burst"]}
            parent = TC_H_ROOT  # how the kernel reports a class at the top of its qdisc
        else:
            params = {"latency": int(time2tick(p["latency"])),
                      "jitter": int(time2tick(p["jitter"])),
                      "loss": percent2u32(p["loss"]), "limit": NETEM_LIMIT,
                      "delay_corr": percent2u32(p["jitter_correlation"]),
                      "loss_corr": percent2u32(p["loss_correlation"])}
            args[handle] = {"parent": parent, "delay": p["latency"], "jitter": p["jitter"],
                            "loss": p["loss"], "limit": NETEM_LIMIT,
                            "delay_corr": p["jitter_correlation"],
                            "loss_corr": p["loss_correlation"]}
        out.append(TcObject(kind, handle, parent, tuple(sorted(params.items()))))
    return tuple(out), args, missing


def request(op: TcOp, args: dict) -> tuple[str, str, int, dict]:
    """(command, kind, handle, keyword arguments) of the pyroute2 tc() call for ``op``;
    ``args``: kernel_objects' arguments by handle (a delete needs none)."""
    o = op.obj
    if op.action == "delete":
        if o.kind == "htb-class":
            return "del-class", "htb", o.handle, {"parent": o.handle & 0xFFFF0000}
        return "del", o.kind, o.handle, {"parent": o.parent}
    return ("replace-class" if o.kind == "htb-class" else "replace",
            "htb" if o.kind == "htb-class" else o.kind, o.handle, dict(args[o.handle]))


def read(ipr: IPRoute, indexes, classes: bool = True) -> dict[int, tuple[tuple[TcObject, ...], dict]]:
    """Each device's qdiscs and htb classes as records (the root qdisc first), and the
    counters of netvirt's qdiscs: {kind: {"bytes", "packets", "drops", "overlimits"}}.  One
    dump of the namespace's qdiscs, and a class dump only of the devices with an htb (none
    with ``classes`` False: the counters are the qdiscs')."""
    wanted = set(indexes)
    objects: dict[int, list] = {i: [] for i in wanted}
    counters: dict[int, dict] = {i: {} for i in wanted}
    for q in ipr.get_qdiscs():
        index = q["index"]
        if index not in wanted:
            continue
        kind = q.get_attr("TCA_KIND")
        options = q.get_attr("TCA_OPTIONS") or {}
        params = {}
        if q["handle"] not in OURS:
            pass  # another's: its kind and handle are all the plan looks at
        elif kind == "htb":
            params = {"defcls": options.get_attr("TCA_HTB_INIT")["defcls"]}
        elif kind == "netem":
            corr = options.get_attr("TCA_NETEM_CORR") or {}
            params = {"latency": options["delay"], "jitter": options["jitter"],
                      "loss": options["loss"], "limit": options["limit"],
                      "delay_corr": corr.get("delay_corr", 0),
                      "loss_corr": corr.get("loss_corr", 0)}
        objects[index].append(TcObject(kind, q["handle"], q["parent"],
                                       tuple(sorted(params.items()))))
        if q["handle"] in OURS:
            stats = q.get_attr("TCA_STATS") or {}
            counters[index][kind] = {"bytes": stats.get("bytes", 0),
                                     "packets": stats.get("packets", 0),
                                     "drops": stats.get("drop", 0),
                                     "overlimits": stats.get("overlimits", 0)}
    for index, objs in objects.items():
        objs.sort(key=lambda o: o.parent != TC_H_ROOT)
        if not classes or not any(o.kind == "htb" for o in objs):
            continue
        for c in ipr.get_classes(index):
            if c["index"] != index or c.get_attr("TCA_KIND") != "htb":
                continue
            parms = (c.get_attr("TCA_OPTIONS") or {}).get_attr("TCA_HTB_PARMS")
            if parms is not None:
                params = {k: parms[k] for k in ("rate", "ceil", "buffer", "cbuffer")}
                objs.append(TcObject("htb-class", c["handle"], c["parent"],
                                     tuple(sorted(params.items()))))
    return {i: (tuple(objects[i]), counters[i]) for i in wanted}


class KernelTc:
    """tc of this namespace's devices, through one netlink socket opened when first needed
    (a node with no VM device opens none).  ``socket``: what opens it (a benchmark gives
    a pyroute2 NetNS of another namespace)."""

    def __init__(self, socket=IPRoute):
        self._open = socket
        self._ipr: IPRoute | None = None

    def _socket(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = self._open()
        return self._ipr

    def read(self, indexes, classes: bool = True) -> dict[int, tuple[tuple[TcObject, ...], dict]]:
        try:
            return read(self._socket(), indexes, classes)
        except NetlinkError as e:  # a device went meanwhile: the next pass reads again
            raise NodeError(f"reading tc back: {e}") from None

    def counters(self, indexes) -> dict[int, dict]:
        return {i: c for i, (_, c) in self.read(indexes, classes=False).items()}

    def apply(self, index: int, ops: list[TcOp], args: dict) -> None:
        """Carry out ``ops`` on device ``index`` (``args``: kernel_objects')."""
        for op in ops:
            command, kind, handle, kw = request(op, args)
            try:
                self._socket().tc(command, kind, index, handle, **kw)
            except NetlinkError as e:
                raise NodeError(f"tc {command} {kind} {handle >> 16:x}:{handle & 0xFFFF:x} "
                                f"on ifindex {index}: {e}") from None

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
