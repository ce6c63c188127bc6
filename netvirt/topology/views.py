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
    ips: tuple[str, ...] = ()  # only where the network has a router (which resolves them)


class RouterPort(NamedTuple):
    """A network's interface on its router, as the network's flows need it."""

    origin: str  # tenant/T/router/R/interface/NETWORK
    router_vni: int  # the router's key: reg3 on the way into its stages
    mac: str
    ip: str


class NetworkOnHv(NamedTuple):
    origin: str  # tenant/T/network/N
    vni: int
    local: tuple[LocalPort, ...]  # ports of the network on this hypervisor, by name
    remote: tuple[RemotePort, ...]  # ports of the network on other hypervisors, by name
    peers: tuple[str, ...]  # underlay IPs of the other hypervisors that host the network
    dhcp: bool = False  # netvirt answers its ports' DHCP
    flood_limit: tuple[int, int] | None = None  # (packets/s, burst) per port; None: none
    # underlay IPs of the hypervisors whose packets of this network to accept: the peers,
    # and where its router routes into it from (its other networks' hosts, its gateway)
    senders: tuple[str, ...] = ()
    router: RouterPort | None = None
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
        r = topo.router_of(tenant, net.name)
        for ref in topo.ports_of(tenant, net.name):
            where = ref.port.hypervisor
            if where == hv:
                ofport = inv.ofports.get(ref.port.interface)
                local.append(LocalPort(ref.origin, ref.port.mac, ref.ips,
                                       ofport if ofport is not None and ofport > 0 else None))
            else:
                # a remote port's addresses matter only where a router resolves them: an
                # unrouted network reaches it by MAC, and its address changes nothing here
                remote.append(RemotePort(ref.origin, ref.port.mac, underlay[where],
                                         ref.ips if r is not None else ()))
                peers.add(underlay[where])
        senders, router = set(peers), None
        if r is not None:
            i = next(i for i in r.interfaces if i.network.name == net.name)
            router = RouterPort(i.origin, r.router.vni, i.mac, i.ip)
            senders |= {underlay[h] for h in topo.router_hosts(r) if h != hv}
        limit = net.flood_limit
        views.append(NetworkOnHv(f"tenant/{tenant}/network/{net.name}", net.vni, tuple(local),
                                 tuple(remote), tuple(sorted(peers)), net.dhcp,
                                 (limit.rate, limit.burst) if limit.rate else None,
                                 tuple(sorted(senders)), router))
    return views


class RouterIface(NamedTuple):
    origin: str  # tenant/T/router/R/interface/NETWORK
    vni: int  # the network's
    mac: str
    ip: str
    cidrs: tuple[str, ...]  # the network's subnets: its connected routes


class StaticRoute(NamedTuple):
    origin: str  # tenant/T/router/R/route/I
    destination: str
    next_hop: str
    vni: int  # of the network the next hop is on
    mac: str  # the router's interface there


class RouterOnHv(NamedTuple):
    """What one router's own stages need on one hypervisor."""

    origin: str  # tenant/T/router/R
    vni: int
    ifaces: tuple[RouterIface, ...]
    routes: tuple[StaticRoute, ...]


def router_views(topo: Topology, hv: str, inv: Inventory) -> list[RouterOnHv]:
    views = []
    for r in topo.routers_on(hv):
        ifaces = tuple(RouterIface(i.origin, i.network.vni, i.mac, i.ip,
                                   tuple(str(s.cidr) for s in i.network.subnets))
                       for i in r.interfaces)
        routes = []
        for n, route in enumerate(r.router.routes):
            hop = next(i for i in r.interfaces
                       if any(route.next_hop in s.cidr for s in i.network.subnets))
            routes.append(StaticRoute(f"{r.origin}/route/{n}", str(route.destination),
                                      str(route.next_hop), hop.network.vni, hop.mac))
        views.append(RouterOnHv(r.origin, r.router.vni, ifaces, tuple(routes)))
    return views
