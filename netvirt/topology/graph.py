"""The configured topology: hypervisors, tenants, networks and ports, and who hosts what.

Compilers ask it questions; they never walk the config themselves.  It is rebuilt for every
config revision, so it is plain indexes built in one pass (ports by hypervisor, by network),
not a graph library's structure: a networkx graph of 1000 ports cost 3-4 ms per revision
for questions that are all one dictionary lookup.  The live topology that `netvirt topo`
draws is a networkx graph (netvirt.topology.render).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from netvirt.config.schema import Config, Hypervisor, Network, Port, Tenant


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
        """(tenant, network) of every network with a port on ``hv``, in that order."""
        keys = sorted({(r.tenant, r.network.name) for r in self._on_hv[hv]})
        return [(t, self._networks[t, n]) for t, n in keys]

    def should_reach(self, src: PortRef, dst: PortRef) -> bool:
        """Whether the intent lets ``src`` reach ``dst`` at all: the same tenant and the
        same network (what a connectivity check holds the datapath to)."""
        return src.tenant == dst.tenant and src.network.name == dst.network.name

    def port(self, tenant: str, name: str) -> PortRef:
        try:
            return self._ports[tenant, name]
        except KeyError:
            raise KeyError(f"no port {tenant}/{name} in the config") from None
