"""The topology graph: hypervisors, tenants, networks and ports, and who hosts what.

Nodes are tuples: ("hv", name), ("tenant", name), ("net", tenant, name),
("port", tenant, name).  Edges: tenant-net, net-port, port-hv.  Compilers ask it questions;
they never walk the config themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from netvirt.config.schema import Config, Hypervisor, Network, Port


@dataclass(frozen=True)
class PortRef:
    tenant: str
    port: Port
    network: Network

    @cached_property
    def origin(self) -> str:
        return f"tenant/{self.tenant}/port/{self.port.name}"

    @cached_property
    def ips(self) -> tuple[str, ...]:
        """The port's addresses as text, as flows carry them (formatted once, not per flow)."""
        return tuple(str(ip) for ip in self.port.ips)


class Topology:
    def __init__(self, cfg: Config):
        self.config = cfg
        self.graph = g = nx.Graph()
        self.hypervisors: dict[str, Hypervisor] = {h.name: h for h in cfg.hypervisors}
        for h in cfg.hypervisors:
            g.add_node(("hv", h.name), obj=h)
        for t in cfg.tenants:
            g.add_node(("tenant", t.name))
            nets = {n.name: n for n in t.networks}
            for n in t.networks:
                g.add_node(("net", t.name, n.name), obj=n)
                g.add_edge(("tenant", t.name), ("net", t.name, n.name))
            for p in t.ports:
                pn = ("port", t.name, p.name)
                g.add_node(pn, obj=PortRef(t.name, p, nets[p.network]))
                g.add_edge(("net", t.name, p.network), pn)
                g.add_edge(pn, ("hv", p.hypervisor))

    def ports_on(self, hv: str) -> list[PortRef]:
        return sorted((self.graph.nodes[n]["obj"] for n in self.graph[("hv", hv)]),
                      key=lambda r: (r.tenant, r.port.name))

    def ports_of(self, tenant: str, network: str) -> list[PortRef]:
        return sorted((self.graph.nodes[n]["obj"] for n in self.graph[("net", tenant, network)]
                       if n[0] == "port"), key=lambda r: r.port.name)

    def hosts_of(self, tenant: str, network: str) -> list[str]:
        """Hypervisors that host at least one port of the network."""
        return sorted({r.port.hypervisor for r in self.ports_of(tenant, network)})

    def networks_on(self, hv: str) -> list[tuple[str, Network]]:
        seen = {}
        for r in self.ports_on(hv):
            seen[(r.tenant, r.network.name)] = r.network
        return [(t, n) for (t, _), n in sorted(seen.items())]

    def port(self, tenant: str, name: str) -> PortRef:
        try:
            return self.graph.nodes[("port", tenant, name)]["obj"]
        except KeyError:
            raise KeyError(f"no port {tenant}/{name} in the config") from None
