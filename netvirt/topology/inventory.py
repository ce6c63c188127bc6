"""What a hypervisor really has, as observed: the ofport of each interface on br-int.

The compilers need ofports to write in_port/output; a port whose interface is not yet on the
switch simply gets no local flows until it appears (a port-status event marks it dirty).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field



@dataclass(frozen=True)
class Inventory:
    ofports: Mapping[str, int] = field(default_factory=dict)  # interface name -> ofport
    link_up: Mapping[str, bool] = field(default_factory=dict)  # interface name -> carrier

    @staticmethod
    def from_ports(ports: Mapping[str, tuple[int, bool]]) -> "Inventory":
        """From what a switch reports: interface name -> (ofport, link up)."""
        return Inventory({n: p for n, (p, _) in ports.items()},
                         {n: up for n, (_, up) in ports.items()})

    def with_port(self, name: str, port: tuple[int, bool] | None) -> "Inventory":
        ofports, link_up = dict(self.ofports), dict(self.link_up)
        if port is None:
            ofports.pop(name, None)
            link_up.pop(name, None)
        else:
            ofports[name], link_up[name] = port
        return Inventory(ofports, link_up)
