"""Keep a userspace ovs-vswitchd's tunnel neighbours resolved.

The userspace datapath resolves each VXLAN peer's underlay MAC itself (its tnl/neigh
cache, learned by snooping ARP on br-phy) and flushes that cache whenever the host's routes
are re-read, which happens whenever a device comes or goes on the hypervisor: every VM
port added.  A tunnel flushed while it carries traffic can stay a black hole: the first
packet's miss is cached as a drop megaflow, later packets never reach the slow path, and
the answer to the one ARP request it sent is not snooped either (its megaflow is cached
too).  Seen in the test lab: one hypervisor cut off from another for as long as traffic
kept coming.  OVS 3.1 has no static entries (`tnl/neigh/set` ages and is flushed like a
learned one; tnl-neigh-event-enabled, which mirrors the kernel's table, came later), so
the node puts back every underlay neighbour the kernel knows on br-phy, and every one
ovs-vswitchd had learned, soon after each flush: setting an entry makes ovs-vswitchd
revalidate its megaflows, which lifts the black hole.  The kernel datapath resolves tunnels
through the kernel's own tables and needs none of this.
"""
from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from pyroute2 import IPRoute

from netvirt.errors import NodeError

# neighbour states whose MAC the kernel vouches for (NUD_REACHABLE, STALE, DELAY, PROBE,
# NOARP, PERMANENT); INCOMPLETE and FAILED have none
VALID_STATES = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80


def kernel_neighbours(device: str) -> dict[str, str]:
    """IPv4 -> MAC of the kernel's valid neighbours on ``device`` ({} if it is not here)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=device)
        if not idx:
            return {}
        out = {}
        for n in ipr.get_neighbours(ifindex=idx[0], family=2):
            ip, mac = n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")
            if ip and mac and n["state"] & VALID_STATES:
                out[ip] = mac.lower()
        return out


def parse_show(output: str) -> dict[str, str]:
    """IPv4 -> MAC of `ovs-appctl tnl/neigh/show` (a header, a rule, then IP MAC BRIDGE,
    and STALE after an entry that has expired and is about to go)."""
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1] != "STALE":
            try:
                out[str(ipaddress.IPv4Address(parts[0]))] = parts[1].lower()
            except ValueError:
                continue  # the header, the rule, an IPv6 neighbour
    return out


def to_set(kernel: dict[str, str], have: dict[str, str], known: dict[str, str]) -> dict[str, str]:
    """What to set in ovs-vswitchd: every neighbour known (the kernel's, and what it had
    learned before: ``known``), with the kernel's MAC where it has one (a peer that changed
    its MAC), that its cache (``have``) lacks or holds with another MAC."""
    want = {**known, **have, **kernel}
    return {ip: mac for ip, mac in want.items() if have.get(ip) != mac}


class TunnelNeighbours:
    """One hypervisor's ovs-vswitchd, through its control socket."""

    def __init__(self, ctl: str, bridge: str):
        self.ctl, self.bridge = ctl, bridge
        self.known: dict[str, str] = {}  # every neighbour seen in its cache, to put back

    def _appctl(self, *args: str) -> str:
        r = subprocess.run(["ovs-appctl", "-t", self.ctl, *args], capture_output=True,
                           text=True, timeout=10)
        if r.returncode != 0:
            raise NodeError(f"ovs-appctl -t {self.ctl} {' '.join(args)}: "
                            f"{(r.stderr or r.stdout).strip()}")
        return r.stdout

    def restore(self, kernel: dict[str, str]) -> list[str]:
        """Set what its cache lacks (or holds with another MAC); returns the IPs set.  A
        restart with everything in place sets nothing."""
        have = parse_show(self._appctl("tnl/neigh/show"))
        todo = to_set(kernel, have, self.known)
        for ip, mac in sorted(todo.items()):
            self._appctl("tnl/neigh/set", self.bridge, ip, mac)
        self.known.update(have)
        self.known.update(todo)
        return sorted(todo)


def vswitchd_ctl(ovsdb: str) -> str:
    """ovs-vswitchd's control socket beside the OVSDB socket (the lab and a default install
    keep both in one run directory); else the name ovs-appctl finds through the pidfile."""
    if ovsdb.startswith("unix:"):
        beside = Path(ovsdb.removeprefix("unix:")).parent / "ovs-vswitchd.ctl"
        if beside.exists():
            return str(beside)
    return "ovs-vswitchd"
