"""What this hypervisor's kernel can do, asked of the kernel itself, not of module lists.

A qdisc is tried on a throwaway veth pair in the current network namespace (the node
agent's: the hypervisor's).  netem is the one that matters: without it, latency/loss
policies cannot be enforced, and netvirt says so.  The datapath hint says whether OVS can
use the kernel datapath here (the openvswitch module is loaded) or must run in userspace."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, NetNS, netns
from pyroute2.netlink import rtnl

QDISCS = {"netem": {"delay": 1000}, "htb": {"default": 0x10}, "tbf": {"rate": "1mbit",
                                                                       "burst": 10000,
                                                                       "latency": "50ms"}}


def datapath_hint() -> str:
    return "system" if Path("/sys/module/openvswitch").exists() else "netdev"


def probe_qdiscs() -> dict[str, bool]:
    """Which of QDISCS this kernel has, tried on a veth pair in a namespace of its own.  Not
    in the hypervisor's namespace: a device coming and going there makes a userspace
    ovs-vswitchd re-read its routes and flush its tunnel neighbour cache, and a tunnel
    whose neighbour is flushed while it carries traffic can stay a black hole (a cached
    megaflow keeps dropping it and nothing asks again)."""
    scratch = f"nvprobe-{os.getpid()}"
    netns.create(scratch)
    try:
        with NetNS(scratch) as ipr:
            # a veth pair: this kernel may lack the dummy driver, never veth
            ipr.link("add", ifname="p0", kind="veth", peer="p1")
            idx = ipr.link_lookup(ifname="p0")[0]
            ipr.link("set", index=idx, state="up")
            found = {}
            for kind, args in QDISCS.items():
                try:
                    ipr.tc("add", kind, index=idx, handle="1:", **args)
                    ipr.tc("del", index=idx, handle="1:", root=True)
                    found[kind] = True
                except NetlinkError:
                    found[kind] = False
            return found
    finally:
        netns.remove(scratch)  # its devices go with it


def ifindexes(names) -> dict[str, int]:
    """The kernel's ifindex of each of these devices that exists here."""
    with IPRoute() as ipr:
        return {n: idx[0] for n in names if (idx := ipr.link_lookup(ifname=n))}


def packet_socket_devices() -> set[int]:
    """The ifindexes that some AF_PACKET socket in this namespace is bound to.  The
    userspace datapath reads each system port's device through one, bound when ovs-vswitchd
    opens the port; when the device is deleted that socket's Iface turns -1, and a device
    made again under the name has none.  /proc/net/packet is the kernel's listing of them
    (its packet_diag netlink family is not in pyroute2): a header, then one socket a line,
    the ifindex in the fifth column."""
    with open("/proc/net/packet") as f:
        next(f)
        return {int(line.split()[4]) for line in f}


def watch_links(on_change) -> threading.Thread:
    """Call ``on_change()`` whenever a device appears, goes or changes, a route changes or
    a neighbour is learned, in this namespace (netlink events), from a daemon thread."""
    wanted = {"RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWROUTE", "RTM_DELROUTE", "RTM_NEWNEIGH"}

    def run():
        with IPRoute() as ipr:
            ipr.bind(groups=rtnl.RTMGRP_LINK | rtnl.RTMGRP_NEIGH | rtnl.RTMGRP_IPV4_ROUTE)
            while True:
                if any(m["event"] in wanted for m in ipr.get()):
                    on_change()
    thread = threading.Thread(target=run, name="link-watch", daemon=True)
    thread.start()
    return thread


def features_string(found: dict[str, bool]) -> str:
    """For OVSDB external_ids: 'htb,tbf' (the qdiscs present, sorted)."""
    return ",".join(sorted(k for k, ok in found.items() if ok))
