"""The configured topology: hypervisors, tenants, networks and ports, and who hosts what.

Compilers ask it questions; they never walk the config themselves.  It is rebuilt for every
config revision, so it is plain indexes built in one pass (ports by hypervisor, by network),
not a graph library's structure: a networkx graph of 1000 ports cost 3-4 ms per revision
for questions that are all one dictionary lookup.  The live topology that `netvirt topo`
draws is a networkx graph (netvirt.topology.render).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from netvirt.config.allocate import digest, router_mac
from netvirt.config.firewall import permits
from netvirt.config.schema import Config, ExternalNetwork, Hypervisor, Network, Port, Router, Tenant


@dataclass(frozen=True)
class PortRef:
    tenant: str
    port: Port
    network: Network
    # derived once, as flows and views carry them
    origin: str = field(init=False, compare=False)
    ips: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "origin", f"tenant/{self.tenant}/port/{self.port.name}")
        object.__setattr__(self, "ips", tuple(str(ip) for ip in self.port.ips))


@dataclass(frozen=True)
class RouterIfaceRef:
    network: Network
    ip: str
    mac: str
    origin: str  # tenant/T/router/R/interface/NETWORK


@dataclass(frozen=True)
class RouterRef:
    tenant: str
    router: Router
    interfaces: tuple[RouterIfaceRef, ...]
    external: ExternalNetwork | None  # where its external gateway is, if it has one
    gateway_hv: str | None  # the hypervisor that does its SNAT and floating IPs
    # (fixed IP, floating IP, origin) of the floating IPs of ports on its networks
    floating_ips: tuple[tuple[str, str, str], ...] = ()
    origin: str = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "origin", f"tenant/{self.tenant}/router/{self.router.name}")

    @property
    def external_mac(self) -> str:
        return router_mac(f"{self.tenant}/{self.router.name}/external")


def gateway_hypervisor(router_origin: str, candidates: list[str]) -> str:
    """Which of an external network's hypervisors serves a router's external side:
    rendezvous hashing, so routers spread over the gateway hypervisors and adding or
    removing one moves only the routers it wins or held."""
    return max(candidates, key=lambda hv: digest(f"{router_origin}@{hv}"))


class Topology:
    def __init__(self, cfg: Config, previous: Topology | None = None):
        """``previous``: the topology of the config this one replaces; a tenant that is the
        very same object there (the loader reuses the models of unchanged tenants) keeps
        its port references instead of deriving them again."""
        self.config = cfg
        self.hypervisors: dict[str, Hypervisor] = {h.name: h for h in cfg.hypervisors}
        on_hv: dict[str, list[PortRef]] = {h: [] for h in self.hypervisors}
        of_net: dict[tuple[str, str], list[PortRef]] = {}
        self._ports: dict[tuple[str, str], PortRef] = {}
        self._networks: dict[tuple[str, str], Network] = {}
        self._refs: dict[str, tuple[Tenant, list[PortRef]]] = {}
        for t in cfg.tenants:
            nets = {n.name: n for n in t.networks}
            for n in t.networks:
                self._networks[t.name, n.name] = n
                of_net[t.name, n.name] = []
            old = previous._refs.get(t.name) if previous else None
            refs = old[1] if old and old[0] is t else [PortRef(t.name, p, nets[p.network])
                                                       for p in t.ports]
            self._refs[t.name] = (t, refs)
            for ref in refs:
                p = ref.port
                self._ports[t.name, p.name] = ref
                of_net[t.name, p.network].append(ref)
                on_hv[p.hypervisor].append(ref)
        self._on_hv = {hv: tuple(sorted(refs, key=lambda r: (r.tenant, r.port.name)))
                       for hv, refs in on_hv.items()}
        self._of_net = {net: tuple(sorted(refs, key=lambda r: r.port.name))
                        for net, refs in of_net.items()}
        self._routing(cfg)

    def _routing(self, cfg: Config) -> None:
        """Routers, and where each is present: on every hypervisor with a port on one of
        its networks (it routes where a packet enters), and on its gateway hypervisor."""
        externals = {e.name: e for e in cfg.external_networks}
        self._routers: dict[tuple[str, str], RouterRef] = {}
        self._router_of: dict[tuple[str, str], RouterRef] = {}
        self._router_hosts: dict[tuple[str, str], tuple[str, ...]] = {}
        routed_on: dict[str, set] = {hv: set() for hv in self.hypervisors}
        for t in cfg.tenants:
            nets = {i.network: r.name for r in t.routers for i in r.interfaces}
            fips: dict[str, list] = {}
            for f in t.floating_ips:
                port = next(p for p in t.ports if p.name == f.port)
                fips.setdefault(nets[port.network], []).append(
                    (str(f.fixed_ip or port.ips[0]), str(f.ip),
                     f"tenant/{t.name}/floating_ip/{f.ip}"))
            for r in t.routers:
                origin = f"tenant/{t.name}/router/{r.name}"
                ifaces = tuple(RouterIfaceRef(
                    self._networks[t.name, i.network], str(i.ip),
                    router_mac(f"{t.name}/{r.name}/{i.network}"), f"{origin}/interface/{i.network}")
                    for i in r.interfaces)
                ext = externals[r.external_gateway.network] if r.external_gateway else None
                ref = RouterRef(t.name, r, ifaces, ext,
                                gateway_hypervisor(origin, ext.hypervisors) if ext else None,
                                tuple(sorted(fips.get(r.name, ()))))
                self._routers[t.name, r.name] = ref
                hosts = {p.port.hypervisor for i in ifaces
                         for p in self._of_net[t.name, i.network.name]}
                if ref.gateway_hv:
                    hosts.add(ref.gateway_hv)
                self._router_hosts[t.name, r.name] = tuple(sorted(hosts))
                for i in ifaces:
                    self._router_of[t.name, i.network.name] = ref
                    for hv in hosts:
                        routed_on[hv].add((t.name, i.network.name))
        self._routed_on = routed_on
        self._by_vni = {n.vni: key for key, n in self._networks.items()}

    def externals_on(self, hv: str) -> list[ExternalNetwork]:
        """The external networks ``hv`` is a gateway hypervisor of, by name."""
        return sorted((e for e in self.config.external_networks if hv in e.hypervisors),
                      key=lambda e: e.name)

    def external_by_vni(self, vni: int) -> ExternalNetwork | None:
        return next((e for e in self.config.external_networks if e.vni == vni), None)

    def routers(self) -> list[RouterRef]:
        """Every router, by (tenant, name)."""
        return [ref for _, ref in sorted(self._routers.items())]

    def routers_on(self, hv: str) -> list[RouterRef]:
        """Routers present on ``hv``, by (tenant, name)."""
        return [ref for key, ref in sorted(self._routers.items())
                if hv in self._router_hosts[key]]

    def network_by_vni(self, vni: int) -> tuple[str, str] | None:
        """(tenant, network) of the network with this VNI, or None."""
        return self._by_vni.get(vni)

    def network(self, tenant: str, name: str) -> Network:
        return self._networks[tenant, name]

    def router(self, tenant: str, name: str) -> RouterRef:
        return self._routers[tenant, name]

    def router_of(self, tenant: str, network: str) -> RouterRef | None:
        """The router with an interface on the network, if any."""
        return self._router_of.get((tenant, network))

    def router_hosts(self, ref: RouterRef) -> tuple[str, ...]:
        return self._router_hosts[ref.tenant, ref.router.name]

    def ports_on(self, hv: str) -> tuple[PortRef, ...]:
        """Ports placed on ``hv``, by (tenant, name)."""
        return self._on_hv[hv]

    def ports_of(self, tenant: str, network: str) -> tuple[PortRef, ...]:
        """Ports of a network, by name."""
        return self._of_net[tenant, network]

    def hosts_of(self, tenant: str, network: str) -> list[str]:
        """Hypervisors that host at least one port of the network."""
        return sorted({r.port.hypervisor for r in self._of_net[tenant, network]})

    def networks_on(self, hv: str) -> list[tuple[str, Network]]:
        """(tenant, network) of every network with a port on ``hv``, and of every network of
        a router present on ``hv`` (routed packets enter them here), in that order."""
        keys = sorted({(r.tenant, r.network.name) for r in self._on_hv[hv]}
                      | self._routed_on[hv])
        return [(t, self._networks[t, n]) for t, n in keys]

    def should_reach(self, src: PortRef, dst: PortRef) -> bool:
        """Whether the intent lets ``src`` reach ``dst`` at all: the same tenant, and the
        same network or two networks of one router (what a connectivity check holds the
        datapath to)."""
        if src.tenant != dst.tenant:
            return False
        if src.network.name == dst.network.name:
            return True
        router = self.router_of(src.tenant, src.network.name)
        return router is not None and router is self.router_of(dst.tenant, dst.network.name)

    def allows(self, src: PortRef, dst: PortRef, proto: str = "icmp", dport: int | None = None,
               icmp_type: int | None = 8) -> bool:
        """Whether the intent lets ``src`` open a connection to ``dst``: reachable, and
        allowed by their security groups (default: a ping)."""
        if not self.should_reach(src, dst):
            return False
        tenant = next(t for t in self.config.tenants if t.name == src.tenant)
        return permits(tenant, src.port, dst.port, proto, dport, icmp_type,
                       0 if proto == "icmp" else None)

    def tenant(self, name: str) -> Tenant:
        return self._refs[name][0]

    def port(self, tenant: str, name: str) -> PortRef:
        try:
            return self._ports[tenant, name]
        except KeyError:
            raise KeyError(f"no port {tenant}/{name} in the config") from None
