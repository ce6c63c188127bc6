"""Names and small steps the lab's parts share: whose namespace is called what, making one
that the lab records for `lab down`, and turning a veth's tx checksum offload off."""
from __future__ import annotations

import os
import subprocess

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


def tx_off(ns: str, ifname: str) -> None:
    """The userspace datapath reads veths with AF_PACKET and does not complete
    CHECKSUM_PARTIAL: with tx offload on, ping works but TCP never connects."""
    r = subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"ethtool -K {ifname} tx off in {ns} failed: {r.stderr.strip()}; "
                       f"install ethtool")
