"""Semantic checks of load balancers.  Each yields (yaml path, message), as config.checks
does."""
from __future__ import annotations

from collections.abc import Iterator

from netvirt.config.schema import Config, Tenant
from netvirt.config.unknown import not_defined

Problem = tuple[tuple, str]


def check_load_balancers(cfg: Config) -> Iterator[Problem]:
    for ti, t in enumerate(cfg.tenants):
        yield from _tenant(t, ("tenants", ti))


def _tenant(t: Tenant, tp: tuple) -> Iterator[Problem]:
    nets = {n.name: n for n in t.networks}
    ports = {p.name: p for p in t.ports}
    taken = {(p.network, ip): f"port {p.name!r}" for p in t.ports for ip in p.ips}
    taken |= {(p.network, a.ip): f"an allowed address pair of port {p.name!r}"
              for p in t.ports for a in p.allowed_address_pairs}
    for r in t.routers:
        for i in r.interfaces:
            if i.ip is not None:
                taken[i.network, i.ip] = f"router {r.name!r}'s interface"
    joined = {(a.network, b.network) for r in t.routers for a in r.interfaces
              for b in r.interfaces}  # networks one router joins, each to each
    vips: dict[tuple, str] = {}
    for li, lb in enumerate(t.load_balancers):  # (unique names: config.checks)
        lp = tp + ("load_balancers", li)
        net = nets.get(lb.network)
        if net is None:
            yield lp + ("network",), not_defined("network", lb.network, t.name, nets)
        else:
            ip = lb.vip.ip
            subnet = next((s for s in net.subnets if ip in s.cidr), None)
            if subnet is None:
                cidrs = ", ".join(str(s.cidr) for s in net.subnets)
                yield lp + ("vip", "ip"), (f"VIP {ip} is outside network {net.name!r}'s "
                                           f"subnets ({cidrs}); pick an address inside")
            elif ip in (subnet.cidr.network_address, subnet.cidr.broadcast_address,
                        subnet.gateway):
                yield lp + ("vip", "ip"), (f"VIP {ip} is the network, broadcast or gateway "
                                           f"address of {subnet.cidr}; pick another")
            elif (who := taken.get((lb.network, ip))) is not None:
                yield lp + ("vip", "ip"), (f"VIP {ip} is already {who}'s address in network "
                                           f"{lb.network!r}; pick an address no port uses")
        key = (lb.network, lb.vip.ip, lb.vip.protocol, lb.vip.port)
        if (other := vips.setdefault(key, lb.name)) != lb.name:
            yield lp + ("vip",), (f"{lb.vip.protocol} {lb.vip.ip}:{lb.vip.port} is already "
                                  f"load balancer {other!r}'s VIP; one VIP, one load balancer")
        seen: dict[str, int] = {}
        for mi, m in enumerate(lb.members):
            mp = lp + ("members", mi)
            port = ports.get(m.port)
            if port is None:
                yield mp + ("port",), (f"port {m.port!r} is not a port of tenant {t.name!r}: "
                                       f"a member is a port of the load balancer's own tenant; "
                                       f"known ports: {', '.join(sorted(ports)) or 'none'}")
            elif port.network != lb.network and (lb.network, port.network) not in joined:
                yield mp + ("port",), (f"port {m.port!r} is on network {port.network!r}, which "
                                       f"no router joins to the VIP's network {lb.network!r}: "
                                       f"a member is on the VIP's network or on one its router "
                                       f"joins to it; add an interface to the router, or pick "
                                       f"another port")
            if m.port in seen:
                yield mp + ("port",), (f"port {m.port!r} is already member #{seen[m.port] + 1}; "
                                       f"list a member once")
            seen.setdefault(m.port, mi)
        if lb.algorithm == "hash" and "affinity_timeout" in lb.model_fields_set:
            yield lp + ("affinity_timeout",), (
                "affinity_timeout is for algorithm source_ip; this load balancer hashes "
                "each connection: set algorithm: source_ip, or drop affinity_timeout")
        hc = lb.health_check
        if hc is not None and lb.vip.protocol != "tcp":
            yield lp + ("health_check",), (
                "checks are TCP connects or HTTP GETs, which a udp VIP's members do not "
                "answer: drop health_check, or make the VIP tcp")
        if hc is not None and hc.type == "tcp":
            for key in sorted({"path", "expect"} & hc.model_fields_set):
                yield lp + ("health_check", key), (f"{key} is for http checks; this one is "
                                                   f"tcp: set type: http, or drop {key}")
        if hc is not None and hc.timeout >= hc.interval:
            yield lp + ("health_check", "timeout"), (
                f"timeout {hc.timeout}s is not shorter than interval {hc.interval}s: a check "
                f"would still wait when the next is due; make it shorter")
        if all(m.weight == 0 for m in lb.members):
            yield lp + ("members",), ("every member has weight 0: the VIP would take no "
                                      "connection; give one a weight of 1 or more")
