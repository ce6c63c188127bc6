"""Semantic checks of routers, external networks and floating IPs.  Each yields (yaml path,
message), as config.checks does; interface_ip() is the one rule for a router interface's
address, which the loader also uses to fill it in."""
from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

from netvirt.config.schema import Config, ExternalNetwork, Network, RouterInterface, Tenant
from netvirt.config.unknown import not_defined
from netvirt.pipeline.layout import RESERVED_INTERFACES

Problem = tuple[tuple, str]


def interface_ip(iface: RouterInterface, net: Network) -> IPv4Address | None:
    """The interface's address: its own, else the gateway of the network's one subnet
    that has a gateway (None: no such single subnet)."""
    if iface.ip is not None:
        return iface.ip
    gateways = [s.gateway for s in net.subnets if s.gateway is not None]
    return gateways[0] if len(gateways) == 1 else None


def _usable(ip: IPv4Address, cidr: IPv4Network) -> str | None:
    """Why ``ip`` cannot be a host address in ``cidr``; None when it can."""
    if ip not in cidr:
        return f"{ip} is outside {cidr}"
    if ip in (cidr.network_address, cidr.broadcast_address):
        return f"{ip} is the network or broadcast address of {cidr}"
    return None


def check_routing(cfg: Config) -> Iterator[Problem]:
    ext = {e.name: e for e in cfg.external_networks}
    hv_names = {h.name for h in cfg.hypervisors}
    for i, e in enumerate(cfg.external_networks):
        yield from _external_network(cfg, e, ("external_networks", i), hv_names)
    # external addresses are global: a router's, or a floating IP, once across all tenants
    taken: dict[IPv4Address, str] = {e.gateway: f"the gateway of {e.name}"
                                     for e in cfg.external_networks}
    for ti, t in enumerate(cfg.tenants):
        tp = ("tenants", ti)
        attached: dict[str, str] = {}  # network -> the router with an interface on it
        for ri, r in enumerate(t.routers):
            rp = tp + ("routers", ri)
            yield from _interfaces(cfg, t, r, rp, attached)
            yield from _routes(t, r, rp)
            g = r.external_gateway
            if g is None:
                continue
            gp = rp + ("external_gateway",)
            e = ext.get(g.network)
            if e is None:
                yield gp + ("network",), (f"external network {g.network!r} is not defined; "
                                          f"known: {', '.join(sorted(ext)) or 'none'}")
            elif (why := _usable(g.ip, e.cidr)) is not None:
                yield gp + ("ip",), f"{why}, external network {e.name!r}'s; pick an address in it"
            if (other := taken.setdefault(g.ip, f"router {t.name}/{r.name}")) != \
                    f"router {t.name}/{r.name}":
                yield gp + ("ip",), f"{g.ip} is already {other}; external addresses are unique"
        yield from _floating_ips(t, tp, ext, attached, taken)


def _external_network(cfg: Config, e: ExternalNetwork, ep: tuple, hv_names) -> Iterator[Problem]:
    if (why := _usable(e.gateway, e.cidr)) is not None:
        yield ep + ("gateway",), f"gateway {why}"
    for hi, hv in enumerate(e.hypervisors):
        if hv not in hv_names:
            yield ep + ("hypervisors", hi), (f"hypervisor {hv!r} is not defined; known: "
                                             f"{', '.join(sorted(hv_names))}")
    if e.interface in RESERVED_INTERFACES:
        yield ep + ("interface",), (f"interface name {e.interface!r} is netvirt's own; name the "
                                    f"gateway hypervisors' device on {e.name}")
    for t in cfg.tenants:
        for p in t.ports:
            if p.interface == e.interface and p.hypervisor in e.hypervisors:
                yield ep + ("interface",), (f"interface {e.interface!r} is also VM port "
                                            f"{t.name}/{p.name}'s on {p.hypervisor}")


def _interfaces(cfg: Config, t: Tenant, r, rp: tuple, attached: dict) -> Iterator[Problem]:
    nets = {n.name: n for n in t.networks}
    mine: set[str] = set()
    for ii, iface in enumerate(r.interfaces):
        ip_ = rp + ("interfaces", ii)
        net = nets.get(iface.network)
        if net is None:
            owner = next((o.name for o in cfg.tenants if o is not t
                          and any(n.name == iface.network for n in o.networks)), None)
            yield ip_ + ("network",), (
                f"network {iface.network!r} is tenant {owner!r}'s: a router has interfaces "
                f"on its own tenant's networks only" if owner else
                not_defined("network", iface.network, t.name, nets))
            continue
        if iface.network in mine:
            yield ip_ + ("network",), (f"router {r.name!r} already has an interface on "
                                       f"network {iface.network!r}; one per network")
            continue
        mine.add(iface.network)
        if (other := attached.setdefault(iface.network, r.name)) != r.name:
            yield ip_ + ("network",), (f"network {iface.network!r} already has router "
                                       f"{other!r}'s interface; one router per network")
        ip = interface_ip(iface, net)
        if ip is None:
            yield ip_, (f"network {net.name!r} has no single subnet with a gateway to take "
                        f"the interface's address from; give ip:")
            continue
        subnet = next((s for s in net.subnets if ip in s.cidr), None)
        if subnet is None:
            yield ip_ + ("ip",), (f"{ip} is outside network {net.name!r}'s subnets "
                                  f"({', '.join(str(s.cidr) for s in net.subnets)})")
        elif (why := _usable(ip, subnet.cidr)) is not None:
            yield ip_ + ("ip",), why
        for p in t.ports:
            if p.network == net.name and ip in p.ips:
                yield ip_ + ("ip",), f"{ip} is port {p.name!r}'s address; pick another"


def _routes(t: Tenant, r, rp: tuple) -> Iterator[Problem]:
    nets = {n.name: n for n in t.networks}
    connected = [(s.cidr, nets[i.network]) for i in r.interfaces if i.network in nets
                 for s in nets[i.network].subnets]
    seen: set[IPv4Network] = set()
    for ri, route in enumerate(r.routes):
        pp = rp + ("routes", ri)
        if route.destination in seen:
            yield pp + ("destination",), f"a route to {route.destination} is already defined"
        seen.add(route.destination)
        if any(route.destination.subnet_of(c) for c, _ in connected):
            yield pp + ("destination",), (f"{route.destination} is inside a subnet the router "
                                          f"is on: the connected route always wins, so this "
                                          f"route would never be used")
        if r.external_gateway is not None and route.destination.prefixlen == 0:
            yield pp + ("destination",), ("the router's external_gateway is its default "
                                          "route; remove this one or the external gateway")
        net = next((n for c, n in connected if route.next_hop in c), None)
        if net is None:
            yield pp + ("next_hop",), (f"next hop {route.next_hop} is on none of router "
                                       f"{r.name!r}'s networks, so no interface reaches it")
        elif not any(p.network == net.name and route.next_hop in p.ips for p in t.ports):
            yield pp + ("next_hop",), (f"next hop {route.next_hop} is no port's address on "
                                       f"network {net.name!r}: netvirt knows each port's MAC "
                                       f"and does not ARP inside tenant networks")


def _floating_ips(t: Tenant, tp: tuple, ext: dict, attached: dict,
                  taken: dict) -> Iterator[Problem]:
    ports = {p.name: p for p in t.ports}
    routers = {r.name: r for r in t.routers}
    mine: set[IPv4Address] = set()  # this tenant's floating IPs so far
    fixed_seen: set[tuple] = set()  # (port, fixed IP) that have one
    for fi, f in enumerate(t.floating_ips):
        fp = tp + ("floating_ips", fi)
        here = f"floating IP of {t.name}/{f.port}"
        if (other := taken.setdefault(f.ip, here)) != here or f.ip in mine:
            yield fp + ("ip",), f"{f.ip} is already {other}; external addresses are unique"
        mine.add(f.ip)
        port = ports.get(f.port)
        if port is None:
            yield fp + ("port",), not_defined("port", f.port, t.name, ports)
            continue
        fixed = f.fixed_ip or port.ips[0]
        if fixed not in port.ips:
            yield fp + ("fixed_ip",), (f"{fixed} is not one of port {f.port!r}'s addresses "
                                       f"({', '.join(map(str, port.ips))})")
        if (f.port, fixed) in fixed_seen:
            yield fp + ("fixed_ip",), f"{f.port} {fixed} already has a floating IP; one each"
        fixed_seen.add((f.port, fixed))
        router = routers.get(attached.get(port.network, ""))
        if router is None or router.external_gateway is None:
            yield fp, (f"port {f.port!r}'s network {port.network!r} has no router with an "
                       f"external_gateway; a floating IP needs one"
                       + ("" if router is None else f" (router {router.name!r} has none)"))
            continue
        e = ext.get(router.external_gateway.network)
        if e is not None and (why := _usable(f.ip, e.cidr)) is not None:
            yield fp + ("ip",), (f"{why}, external network {e.name!r}'s, where router "
                                 f"{router.name!r} has its gateway")
