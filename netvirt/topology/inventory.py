"""What a hypervisor really has, as observed: the ofport of each interface on br-int, and
the MACs learned on the external networks it is a gateway of.

The compilers need ofports to write in_port/output; a port whose interface is not yet on the
switch simply gets no local flows until it appears (a port-status event marks it dirty).
A router's way out needs its next hop's MAC on the external network, which netvirt cannot
know from the config: the controller learns it from ARP (netvirt.controller.packet_in) and
keeps it in the hypervisor's OVSDB across restarts.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Inventory:
    ofports: Mapping[str, int] = field(default_factory=dict)  # interface name -> ofport
    link_up: Mapping[str, bool] = field(default_factory=dict)  # interface name -> carrier
    # (external network VNI, IPv4) -> MAC learned there
    neighbours: Mapping[tuple[int, str], str] = field(default_factory=dict)
    # load balancer members (their origins) whose health checks fail: out of their groups
    down_members: frozenset[str] = frozenset()

    @staticmethod
    def from_ports(ports: Mapping[str, tuple[int, bool]],
                   neighbours: Mapping[tuple[int, str], str] | None = None,
                   down_members: frozenset[str] = frozenset()) -> "Inventory":
        """From what a switch reports: interface name -> (ofport, link up)."""
        return Inventory({n: p for n, (p, _) in ports.items()},
                         {n: up for n, (_, up) in ports.items()}, dict(neighbours or {}),
                         down_members)

    def with_port(self, name: str, port: tuple[int, bool] | None) -> "Inventory":
        ofports, link_up = dict(self.ofports), dict(self.link_up)
        if port is None:
            ofports.pop(name, None)
            link_up.pop(name, None)
        else:
            ofports[name], link_up[name] = port
        return Inventory(ofports, link_up, self.neighbours, self.down_members)

    def with_neighbours(self, learned: Mapping[tuple[int, str], str]) -> "Inventory":
        return Inventory(self.ofports, self.link_up, {**self.neighbours, **learned},
                         self.down_members)

    def with_down_members(self, down: frozenset[str]) -> "Inventory":
        return Inventory(self.ofports, self.link_up, self.neighbours, down)
