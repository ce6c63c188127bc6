"""The to_vm half of QoS as tc objects on the hypervisor's side of a VM's device, and the
plan that makes a device hold them: records in, operations out, as flows are diffed.

What a VM receives leaves OVS through that device, so its egress qdisc shapes it: an htb
class (rate, burst) and, where latency, jitter or loss apply, netem under it (or alone at
the root when there is no rate).  htb first: netem's own rate would serialise packets
behind their delay, and htb is what paces TCP without drops (a shaper, not a policer).

netvirt's qdiscs have handles of their own (ROOT 4e56:, NETEM 4e57:), so that a root
qdisc someone else put on a device is told apart from ours: ours is replaced or removed,
another's is left alone unless the port has a policy, which then takes the root.

Objects carry their parameters in the kernel's own units (pyroute2 converts, in host/tc.py),
the units a dump gives back: a read-back compares equal to what was asked for, and a node
agent restarted with nothing changed sends nothing.
"""
from __future__ import annotations

from typing import NamedTuple

from netvirt.topology.qos import ToVm

TC_H_ROOT = 0xFFFFFFFF
HTB_HANDLE = 0x4E560000  # "NV"
HTB_CLASS = HTB_HANDLE | 1
NETEM_HANDLE = 0x4E570000
OURS = frozenset({HTB_HANDLE, NETEM_HANDLE})


class TcObject(NamedTuple):
    kind: str  # "htb" (root qdisc), "htb-class", "netem"
    handle: int  # a qdisc's handle, a class's id
    parent: int
    params: tuple = ()  # ((name, value), ...) in kernel units, sorted


class TcOp(NamedTuple):
    action: str  # "replace" or "delete"
    obj: TcObject


def shape(spec: ToVm, netem_ok: bool) -> tuple[list[tuple[str, int, int, dict]], list[str]]:
    """What a device should hold for ``spec``, before unit conversion: (kind, handle,
    parent, semantic parameters) in the order they are made, and the parts of the policy
    this kernel cannot enforce (netem's, where it has no netem)."""
    out, missing = [], []
    netem_parent = TC_H_ROOT
    if spec.rate is not None:
        out.append(("htb", HTB_HANDLE, TC_H_ROOT, {"default": HTB_CLASS & 0xFFFF}))
        out.append(("htb-class", HTB_CLASS, HTB_HANDLE, {"rate": spec.rate,
                                                         "burst": spec.burst}))
        netem_parent = HTB_CLASS
    if spec.netem:
        if netem_ok:
            out.append(("netem", NETEM_HANDLE, netem_parent, {
                "latency": spec.latency, "jitter": spec.jitter,
                "jitter_correlation": spec.jitter_correlation, "loss": spec.loss,
                "loss_correlation": spec.loss_correlation}))
        else:
            missing = spec.netem_parts()
    return out, missing


def plan(want: tuple[TcObject, ...], have: tuple[TcObject, ...]) -> list[TcOp]:
    """The operations that make a device that holds ``have`` (its root qdisc first, as read)
    hold ``want`` (netvirt's objects for it, root first; empty: none)."""
    root = next((o for o in have if o.parent == TC_H_ROOT and o.kind != "htb-class"), None)
    if not want:
        if root is not None and root.handle in OURS:
            return [TcOp("delete", root)]  # its classes and children go with it
        return []
    ops: list[TcOp] = []
    by_handle = {o.handle: o for o in have}
    if root is None or root.handle != want[0].handle:
        # a new root replaces the old one and everything under it: make all of ours.  Our
        # own old root goes first: its netem child may hold the handle the new root takes
        first = [TcOp("delete", root)] if root is not None and root.handle in OURS else []
        return first + [TcOp("replace", o) for o in want]
    for o in want:
        if by_handle.get(o.handle) != o:
            ops.append(TcOp("replace", o))
    wanted = {o.handle for o in want}
    ops += [TcOp("delete", o) for o in have
            if o.handle not in wanted and o.kind == "netem" and o.parent in wanted]
    return ops
