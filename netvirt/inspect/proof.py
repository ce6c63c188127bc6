"""The isolation proof as apply, plan and `validate --deep` run it: compile every
hypervisor with the inventories its switch reports, giving an interface that has no ofport
yet (a port this revision adds) a provisional one above the others, so that every flow the
revision will install is in the proof with only its port number differing; then prove the
result apart (netvirt.inspect.isolation), and each tenant's firewall against its security
groups (netvirt.inspect.groups).

One IsolationProof lives as long as the controller: its compilers and its walk keep what
the last revision had, so a one-port change recompiles and re-walks that port's network."""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from netvirt.inspect.groups import FirewallViolation, GroupsProver, describe_breach
from netvirt.inspect.isolation import Prover, Violation, describe
from netvirt.pipeline.layout import TUNNEL_OFPORT
from netvirt.reconcile.compiler import Compiler
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

SHOWN = 5  # violations an error names in full; the count says how many more


@dataclass(frozen=True)
class Proof:
    violations: tuple[Violation | FirewallViolation, ...]
    ports: int
    flows: int
    hypervisors: int
    seconds: float

    def summary(self) -> str:
        what = (f"{self.ports} port(s), {self.flows} flow(s) on {self.hypervisors} "
                f"hypervisor(s), {self.seconds:.2f}s")
        if not self.violations:
            return (f"isolation proven: no port reaches what the intent does not allow; every "
                    f"firewall opens no connection its security groups do not allow ({what})")
        return f"isolation NOT proven: {len(self.violations)} reach(es) the intent does not allow ({what})"

    def explain(self, loaded) -> str:
        """The summary and the first violations, each with its path and YAML lines."""
        parts = [self.summary()] + [
            describe_breach(v, loaded) if isinstance(v, FirewallViolation) else describe(v, loaded)
            for v in self.violations[:SHOWN]]
        if len(self.violations) > SHOWN:
            parts.append(f"... and {len(self.violations) - SHOWN} more")
        return "\n".join(parts)


def provisional(topo: Topology, known: Mapping[str, Inventory]) -> dict[str, Inventory]:
    out = {}
    for hv in topo.hypervisors:
        inv = known.get(hv) or Inventory()
        ofports = {name: p for name, p in inv.ofports.items() if p and p > 0}
        nxt = max(ofports.values(), default=0) + 1
        names = [r.port.interface for r in topo.ports_on(hv)]
        names += [e.interface for e in topo.externals_on(hv)]
        for name in names:
            if name not in ofports:
                if nxt == TUNNEL_OFPORT:
                    nxt += 1
                ofports[name], nxt = nxt, nxt + 1
        out[hv] = Inventory(ofports, inv.link_up, inv.neighbours, inv.down_members)
    return out


class IsolationProof:
    def __init__(self):
        self._lock = threading.Lock()
        self._compilers: dict[str, Compiler] = {}
        self._prover = Prover()
        self._groups = GroupsProver()

    def run(self, topo: Topology, known: Mapping[str, Inventory]) -> Proof:
        with self._lock:
            t0 = time.perf_counter()
            inventories = provisional(topo, known)
            for hv in set(self._compilers) - set(topo.hypervisors):
                del self._compilers[hv]
            per_hv = {hv: self._compilers.setdefault(hv, Compiler()).compile(topo, hv, inv)
                      for hv, inv in inventories.items()}
            violations = self._prover.prove(topo, per_hv, inventories)
            # inside each tenant: what its firewalls pass, against its security groups
            violations += self._groups.prove(topo, per_hv, inventories)
            return Proof(tuple(violations), sum(len(topo.ports_on(hv)) for hv in topo.hypervisors),
                         sum(len(d.by_key) for d in per_hv.values()), len(per_hv),
                         time.perf_counter() - t0)
