"""Which tc qdiscs does this kernel have?  Asked of the kernel itself, not of module lists:
a qdisc is tried on a veth in a throwaway network namespace.  netem is the one that
matters: without it, latency/loss policies cannot be enforced, and netvirt says so."""
from __future__ import annotations

import os

from pyroute2 import NetlinkError, NetNS, netns

QDISCS = {"netem": {"delay": 1000}, "htb": {"default": 0x10}, "tbf": {"rate": "1mbit",
                                                                       "burst": 10000,
                                                                       "latency": "50ms"}}


def probe_qdiscs() -> dict[str, bool]:
    name = f"nv-probe-{os.getpid()}"
    netns.create(name)
    try:
        with NetNS(name) as ns:
            # a veth pair: this kernel may lack the dummy driver, never veth
            ns.link("add", ifname="probe0", kind="veth", peer="probe1")
            idx = ns.link_lookup(ifname="probe0")[0]
            ns.link("set", index=idx, state="up")
            found = {}
            for kind, args in QDISCS.items():
                try:
                    ns.tc("add", kind, index=idx, handle="1:", **args)
                    ns.tc("del", index=idx, handle="1:", root=True)
                    found[kind] = True
                except NetlinkError:
                    found[kind] = False
            return found
    finally:
        netns.remove(name)


def features_string(found: dict[str, bool]) -> str:
    """For OVSDB external_ids: 'htb,tbf' (the qdiscs present, sorted)."""
    return ",".join(sorted(k for k, ok in found.items() if ok))
