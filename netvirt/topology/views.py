"""What one network looks like from one hypervisor: the whole input of that network's flows.

A view holds plain values only (no config objects), so two views compare and hash by value;
they are named tuples, so that hashing one (every revision, for every network) is done in C.
Everything a network's flows on a hypervisor depend on is in its view and nothing else is, so
the compile of a view can be remembered: a config revision or a port event recompiles only the
networks whose view it changed (see netvirt.reconcile.compiler.Compiler).
"""
from __future__ import annotations

import threading
from typing import NamedTuple

from netvirt.topology.graph import Topology
from netvirt.topology.inventory import Inventory


class LocalPort(NamedTuple):
    origin: str  # tenant/T/port/P
    mac: str
    ips: tuple[str, ...]
    ofport: int | None  # None: its interface is not on br-int (yet)


class RemotePort(NamedTuple):
    origin: str
    mac: str
    underlay_ip: str  # of the hypervisor that hosts it


class NetworkOnHv(NamedTuple):
    origin: str  # tenant/T/network/N
    vni: int
    local: tuple[LocalPort, ...]  # ports of the network on this hypervisor, by name
    remote: tuple[RemotePort, ...]  # ports of the network on other hypervisors, by name
    peers: tuple[str, ...]  # underlay IPs of the other hypervisors that host the network
    dhcp: bool = False  # netvirt answers its ports' DHCP
    flood_limit: tuple[int, int] | None = None  # (packets/s, burst) per port; None: none

    @property
    def bound(self) -> tuple[LocalPort, ...]:
        """Local ports whose interface is on the switch."""
        return tuple(p for p in self.local if p.ofport is not None)


_last = threading.local()  # per agent thread: (topo, hv, inventory, views) of its last call


def network_views(topo: Topology, hv: str, inv: Inventory) -> list[NetworkOnHv]:
    """The views of every network that has a port on ``hv``, in (tenant, network) order.
    Several features compile from these views: the thread's last answer is kept for its
    next question about the very same topology, hypervisor and inventory."""
    last = getattr(_last, "entry", None)
    if last is not None and last[0] is topo and last[1] == hv and last[2] is inv:
        return last[3]
    views = _network_views(topo, hv, inv)
    _last.entry = (topo, hv, inv, views)
    return views


def _network_views(topo: Topology, hv: str, inv: Inventory) -> list[NetworkOnHv]:
    underlay = {name: str(h.underlay_ip.ip) for name, h in topo.hypervisors.items()}
    views = []
    for tenant, net in topo.networks_on(hv):
        local, remote, peers = [], [], set()
        for ref in topo.ports_of(tenant, net.name):
            where = ref.port.hypervisor
            if where == hv:
                ofport = inv.ofports.get(ref.port.interface)
                local.append(LocalPort(ref.origin, ref.port.mac, ref.ips,
                                       ofport if ofport is not None and ofport > 0 else None))
            else:
                remote.append(RemotePort(ref.origin, ref.port.mac, underlay[where]))
                peers.add(underlay[where])
        limit = net.flood_limit
        views.append(NetworkOnHv(f"tenant/{tenant}/network/{net.name}", net.vni, tuple(local),
                                 tuple(remote), tuple(sorted(peers)), net.dhcp,
                                 (limit.rate, limit.burst) if limit.rate else None))
    return views
