"""Names and small steps the lab's parts share: whose namespace is called what, making one
that the lab records for `lab down`, and turning a veth's tx checksum offload off."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from pyroute2 import netns

from netvirt.errors import LabError

PREFIX = os.environ.get("NETVIRT_LAB_PREFIX", "nv")  # lets a test lab live beside the demo's


def hv_netns(hv: str, prefix: str = PREFIX) -> str:
    return f"{prefix}-{hv}"


def vm_netns(tenant: str, port: str, prefix: str = PREFIX) -> str:
    return f"{prefix}-{tenant}-{port}"


def external_netns(name: str, prefix: str = PREFIX) -> str:
    return f"{prefix}-ext-{name}"


def netns_create(name: str, lab) -> None:
    """Make namespace ``name``, recorded by ``lab`` (removed by `lab down`)."""
    if name in netns.listnetns():
        raise LabError(f"network namespace {name} already exists but is not recorded by this "
                       f"lab; remove it with `ip netns del {name}` if it is a leftover")
    netns.create(name)
    lab._record("namespaces", name)


def remove_netns(name: str, timeout: float = 2.0) -> None:
    """Remove a namespace the lab made, and first every process still in it (what
    `lab exec` started there: a namespace the lab made holds only the lab's processes),
    SIGTERM, then SIGKILL after ``timeout``.  A removed namespace would not stop them."""
    pids = netns.ns_pids().get(name, [])
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        time.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    netns.remove(name)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tx_off(ns: str, ifname: str) -> None:
    """The userspace datapath reads veths with AF_PACKET and does not complete
    CHECKSUM_PARTIAL: with tx offload on, ping works but TCP never connects."""
    r = subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"ethtool -K {ifname} tx off in {ns} failed: {r.stderr.strip()}; "
                       f"install ethtool")
