"""Semantic checks that the schema cannot express.  Each yields (yaml path, message)."""
from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address

from netvirt.config.firewall import check_firewall
from netvirt.config.load_balancer import check_load_balancers
from netvirt.config.qos import check_qos
from netvirt.config.routing import check_routing
from netvirt.config.schema import Config
from netvirt.config.unknown import not_defined
from netvirt.pipeline.layout import RESERVED_INTERFACES

Problem = tuple[tuple, str]


def check(cfg: Config) -> Iterator[Problem]:
    yield from _unique(cfg.hypervisors, ("hypervisors",), "hypervisor")
    yield from _unique(cfg.tenants, ("tenants",), "tenant")
    yield from _unique(cfg.external_networks, ("external_networks",), "external network")
    yield from _hypervisors(cfg)
    hv_names = {h.name for h in cfg.hypervisors}
    yield from _vnis(cfg)
    iface_owner: dict[tuple[str, str], tuple] = {}
    for ti, t in enumerate(cfg.tenants):
        tp = ("tenants", ti)
        yield from _unique(t.networks, tp + ("networks",), "network")
        yield from _unique(t.ports, tp + ("ports",), "port")
        yield from _unique(t.routers, tp + ("routers",), "router")
        yield from _unique(t.load_balancers, tp + ("load_balancers",), "load balancer")
        yield from _unique(t.qos_policies, tp + ("qos_policies",), "QoS policy")
        yield from _subnets(t, tp)
        nets = {n.name: n for n in t.networks}
        seen_mac: dict[tuple[str, str], str] = {}
        seen_ip: dict[tuple[str, IPv4Address], str] = {}
        for pi, p in enumerate(t.ports):
            pp = tp + ("ports", pi)
            if p.hypervisor not in hv_names:
                yield pp + ("hypervisor",), (
                    f"hypervisor {p.hypervisor!r} is not defined; define it under hypervisors "
                    f"or use one of: {', '.join(sorted(hv_names))}")
            net = nets.get(p.network)
            if net is None:
                yield pp + ("network",), not_defined("network", p.network, t.name, nets)
            if p.mac is not None:
                other = seen_mac.setdefault((p.network, p.mac), p.name)
                if other != p.name:
                    yield pp + ("mac",), f"MAC {p.mac} is already used by port {other!r} in network {p.network!r}"
            for ii, ip in enumerate(p.ips):
                ipp = pp + ("ips", ii)
                other = seen_ip.setdefault((p.network, ip), p.name)
                if other != p.name or p.ips.index(ip) != ii:
                    yield ipp, f"IP {ip} is already used by port {other!r} in network {p.network!r}"
                if net is not None:
                    subnet = next((s for s in net.subnets if ip in s.cidr), None)
                    if subnet is None:
                        cidrs = ", ".join(str(s.cidr) for s in net.subnets)
                        yield ipp, f"IP {ip} is outside network {net.name!r}'s subnets ({cidrs}); pick an address inside"
                    elif ip in (subnet.cidr.network_address, subnet.cidr.broadcast_address):
                        yield ipp, f"IP {ip} is the network or broadcast address of {subnet.cidr}"
                    elif ip == subnet.gateway:
                        yield ipp, f"IP {ip} is the gateway of {subnet.cidr}; pick another address"
            if p.interface in RESERVED_INTERFACES:
                yield pp + ("interface",), (
                    f"interface name {p.interface!r} is netvirt's own (reserved: "
                    f"{', '.join(sorted(RESERVED_INTERFACES))}); pick another or leave it out")
            elif p.interface is not None:
                key = (p.hypervisor, p.interface)
                if key in iface_owner:
                    yield pp + ("interface",), (
                        f"interface {p.interface!r} on {p.hypervisor!r} is already used by "
                        f"{iface_owner[key][0]}/{iface_owner[key][1]}; names must be unique per hypervisor")
                else:
                    iface_owner[key] = (t.name, p.name)
    yield from check_routing(cfg)
    yield from check_firewall(cfg)
    yield from check_load_balancers(cfg)
    yield from check_qos(cfg)


def _unique(items, path: tuple, what: str) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in first:
            yield path + (i, "name"), (
                f"duplicate {what} name {item.name!r} (also {what} #{first[item.name] + 1}); rename one")
        else:
            first[item.name] = i


def _hypervisors(cfg: Config) -> Iterator[Problem]:
    seen_ip: dict = {}
    seen_db: dict = {}
    for i, h in enumerate(cfg.hypervisors):
        other = seen_ip.setdefault(h.underlay_ip.ip, h.name)
        if other != h.name:
            yield ("hypervisors", i, "underlay_ip"), f"underlay IP {h.underlay_ip.ip} is also used by hypervisor {other!r}"
        other = seen_db.setdefault(h.ovsdb, h.name)
        if other != h.name:
            yield ("hypervisors", i, "ovsdb"), f"OVSDB endpoint {h.ovsdb} is also used by hypervisor {other!r}"


def _vnis(cfg: Config) -> Iterator[Problem]:
    """Networks, routers and external networks share one VNI space: all are keys of the
    pipeline's metadata, and networks and routers are keys on tunnels too."""
    owner: dict[int, str] = {}
    zones: dict[int, str] = {}
    explicit = [(("external_networks", ei), f"external network {e.name}", e.vni)
                for ei, e in enumerate(cfg.external_networks)]
    for ti, t in enumerate(cfg.tenants):
        explicit += [(("tenants", ti, "networks", ni), f"network {t.name}/{n.name}", n.vni)
                     for ni, n in enumerate(t.networks)]
        explicit += [(("tenants", ti, "routers", ri), f"router {t.name}/{r.name}", r.vni)
                     for ri, r in enumerate(t.routers)]
        for ri, r in enumerate(t.routers):
            here = f"router {t.name}/{r.name}"
            if r.zone is not None and (other := zones.setdefault(r.zone, here)) != here:
                yield ("tenants", ti, "routers", ri, "zone"), (
                    f"conntrack zone {r.zone} is already {other}'s; pick another")
    for ti, t in enumerate(cfg.tenants):  # after every router's: a router keeps its zone
        for pi, p in enumerate(t.ports):
            here = f"port {t.name}/{p.name}"
            if p.zone is not None and (other := zones.setdefault(p.zone, here)) != here:
                yield ("tenants", ti, "ports", pi, "zone"), (
                    f"conntrack zone {p.zone} is already {other}'s; pick another")
    for ti, t in enumerate(cfg.tenants):  # last: its load balancers' zones
        for key, zone in (("zone", t.zone), ("hairpin_zone", t.hairpin_zone)):
            here = f"tenant {t.name}'s {key}"
            if zone is not None and (other := zones.setdefault(zone, here)) != here:
                yield ("tenants", ti, key), (
                    f"conntrack zone {zone} is already {other}'s; pick another")
    for path, here, vni in explicit:
        if vni is None:
            continue
        other = owner.setdefault(vni, here)
        if other != here:
            yield path + ("vni",), (f"VNI {vni} is already used by {other}; VNIs are global, "
                                    f"pick another")


def _subnets(t, tp: tuple) -> Iterator[Problem]:
    seen: list[tuple] = []
    for ni, n in enumerate(t.networks):
        for si, s in enumerate(n.subnets):
            sp = tp + ("networks", ni, "subnets", si)
            if s.gateway is not None and s.gateway not in s.cidr:
                yield sp + ("gateway",), f"gateway {s.gateway} is outside subnet {s.cidr}"
            if n.dhcp and s.gateway is None:
                yield sp + ("cidr",), (
                    f"network {n.name!r} has dhcp: true, so subnet {s.cidr} needs a gateway "
                    f"(the DHCP server answers from it); add gateway: or turn dhcp off")
            for (other_net, other) in seen:
                if s.cidr.overlaps(other):
                    yield sp + ("cidr",), (
                        f"subnet {s.cidr} overlaps {other} of network {other_net!r} in tenant "
                        f"{t.name!r}; subnets inside one tenant must not overlap")
            seen.append((n.name, s.cidr))
