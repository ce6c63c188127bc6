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
    # allowed address pairs: (IP, MAC).  A pair's MAC, when it is not the port's, is not
    # looked up: it may move between ports (VRRP), so frames to it flood, as OVN's
    # "unknown" addresses do
    pairs: tuple[tuple[str, str], ...] = ()


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
            pairs = tuple((str(a.ip), a.mac or ref.port.mac)
                          for a in ref.port.allowed_address_pairs)
            if where == hv:
                ofport = inv.ofports.get(ref.port.interface)
                local.append(LocalPort(ref.origin, ref.port.mac, ref.ips,
                                       ofport if ofport is not None and ofport > 0 else None,
                                       pairs))
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


class Gateway(NamedTuple):
    """A router's external side, as one hypervisor needs it."""

    origin: str  # tenant/T/router/R/external_gateway
    here: bool  # this hypervisor is the router's gateway hypervisor
    gateway_underlay: str  # that hypervisor's underlay IP (the way out from elsewhere)
    # the rest only matters where ``here``
    senders: tuple[str, ...] = ()  # underlay IPs of the router's other hypervisors
    ext_vni: int = 0
    ext_ofport: int | None = None  # the external network's port on br-int here
    cidr: str = ""  # of the external network
    next_hop: str = ""  # its gateway
    mac: str = ""  # the router's MAC there
    ip: str = ""  # the router's address there, SNAT's
    snat: bool = True
    inside: tuple[str, ...] = ()  # the router's subnets: what SNAT translates
    zone: int = 0  # the router's conntrack zone
    floating_ips: tuple[tuple[str, str, str], ...] = ()  # (fixed, floating, origin)


class RouterOnHv(NamedTuple):
    """What one router's own stages need on one hypervisor."""

    origin: str  # tenant/T/router/R
    vni: int
    ifaces: tuple[RouterIface, ...]
    routes: tuple[StaticRoute, ...]
    gateway: Gateway | None = None


class ExternalOnHv(NamedTuple):
    """An external network on one of its gateway hypervisors."""

    origin: str  # external_network/NAME
    vni: int
    ofport: int | None  # its port on br-int (None: not there yet)
    neighbours: tuple[tuple[str, str], ...]  # (IP, MAC) learned on it


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
        views.append(RouterOnHv(r.origin, r.router.vni, ifaces, tuple(routes),
                                _gateway(topo, hv, inv, r) if r.external else None))
    return views


def _ofport(inv: Inventory, name: str) -> int | None:
    ofport = inv.ofports.get(name)
    return ofport if ofport is not None and ofport > 0 else None


def _gateway(topo: Topology, hv: str, inv: Inventory, r) -> Gateway:
    underlay = {name: str(h.underlay_ip.ip) for name, h in topo.hypervisors.items()}
    origin = f"{r.origin}/external_gateway"
    if r.gateway_hv != hv:
        return Gateway(origin, False, underlay[r.gateway_hv])
    e, g = r.external, r.router.external_gateway
    return Gateway(origin, True, underlay[hv],
                   tuple(sorted(underlay[h] for h in topo.router_hosts(r) if h != hv)),
                   e.vni, _ofport(inv, e.interface), str(e.cidr), str(e.gateway),
                   r.external_mac, str(g.ip), g.snat,
                   tuple(str(s.cidr) for i in r.interfaces for s in i.network.subnets),
                   r.router.zone, r.floating_ips)


def external_views(topo: Topology, hv: str, inv: Inventory) -> list[ExternalOnHv]:
    return [ExternalOnHv(f"external_network/{e.name}", e.vni, _ofport(inv, e.interface),
                         tuple(sorted((ip, mac) for (vni, ip), mac in inv.neighbours.items()
                                      if vni == e.vni)))
            for e in topo.externals_on(hv)]
