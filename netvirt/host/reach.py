"""Reachability probes between VM ports of a lab, by real traffic.

A target counts as reached only if the ping is answered *and* the target itself received
the echo requests (its own ICMP InEchos counter went up): with overlapping subnets, and
MACs that validation allows to repeat across tenants, an answer from another tenant's VM
with the same IP and MAC would otherwise look like success.  To make a counter tell who
pinged it, the probes run in rounds in which no address is pinged twice (so no two VMs that
share an address are probed at once), the rounds one after the other, a round's probes in
parallel.
"""
from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from netvirt.config.schema import Config
from netvirt.host.lab import Lab, vm_netns
from netvirt.topology import Topology


def ping(ns: str, ip: str, count: int = 2, timeout: float = 1.0) -> bool:
    """True if any of ``count`` echo requests is answered."""
    r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count),
                        "-i", "0.2", "-W", str(timeout), ip], capture_output=True)
    return r.returncode == 0


def echoes_received(ns: str) -> int | None:
    """The ICMP echo requests the namespace's kernel has received (/proc/net/snmp's
    Icmp InEchos: a header line of names, then a line of values); None when the namespace
    is not there (a guest that is gone)."""
    lines = [ln.split() for ln in subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"], capture_output=True,
        text=True).stdout.splitlines() if ln.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")]) if len(lines) == 2 else None


def reaches(src_ns: str, dst_ns: str, ip: str) -> bool:
    subprocess.run(["ip", "-n", src_ns, "neigh", "flush", "to", ip], capture_output=True)
    before = echoes_received(dst_ns)
    if before is None:
        return False
    return ping(src_ns, ip) and (echoes_received(dst_ns) or 0) > before


def rounds(addresses: list[str]) -> list[list[tuple[int, int]]]:
    """Every ordered pair (source, target) of the VMs whose first addresses these are, once,
    in rounds in which no source probes twice and no address is probed twice."""
    left = [(i, j) for i in range(len(addresses)) for j in range(len(addresses)) if i != j]
    out = []
    while left:
        sources, targets, this, rest = set(), set(), [], []
        for i, j in left:
            if i in sources or addresses[j] in targets:
                rest.append((i, j))
            else:
                sources.add(i)
                targets.add(addresses[j])
                this.append((i, j))
        out.append(this)
        left = rest
    return out


@dataclass
class Matrix:
    ports: list[tuple[str, str]]  # (tenant, port)
    reached: dict  # (src, dst) -> bool
    should: dict  # (src, dst) -> bool: whether the intent lets src reach dst

    def expected(self, src, dst) -> bool:
        return self.should[src, dst]

    @property
    def as_expected(self) -> bool:
        return all(v == self.should[k] for k, v in self.reached.items())


def matrix(lab: Lab, cfg: Config) -> Matrix:
    topo = Topology(cfg)
    refs = [topo.port(t.name, p.name) for t in cfg.tenants for p in t.ports]
    ports = [(r.tenant, r.port.name) for r in refs]
    ns = [vm_netns(r.tenant, r.port.name, lab.prefix) for r in refs]
    should = {(ports[i], ports[j]): topo.allows(refs[i], refs[j])  # a ping
              for i in range(len(refs)) for j in range(len(refs)) if i != j}
    reached = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for pairs in rounds([r.ips[0] for r in refs]):
            probes = [(i, j, pool.submit(reaches, ns[i], ns[j], refs[j].ips[0]))
                      for i, j in pairs]
            for i, j, done in probes:
                reached[ports[i], ports[j]] = done.result()
    return Matrix(ports, reached, should)


def render_matrix(m: Matrix) -> str:
    names = [f"{t}/{p}" for t, p in m.ports]
    w = max(len(n) for n in names)
    head = " " * (w + 2) + "  ".join(f"{i:>2}" for i in range(1, len(names) + 1))
    lines = [head]
    for i, src in enumerate(m.ports):
        cells = []
        for dst in m.ports:
            if src == dst:
                cells.append(" -")
                continue
            ok = m.reached[(src, dst)]
            mark = "ok" if ok else " ."
            cells.append(mark if ok == m.expected(src, dst) else ("!!" if ok else "XX"))
        lines.append(f"{names[i]:<{w}}  " + "  ".join(cells) + f"   {i + 1:>2}")
    lines.append("ok = reached, . = not reached (as expected); XX = should reach but does not, "
                 "!! = reached but should not")
    verdict = "as expected" if m.as_expected else "NOT as expected"
    should = [k for k, v in m.should.items() if v]
    inside = sum(1 for k in should if m.reached[k])
    across = sum(1 for (s, d), v in m.reached.items() if s[0] != d[0] and v)
    stray = sum(1 for (s, d), v in m.reached.items() if s[0] == d[0] and v and not m.should[s, d])
    lines.append(f"should reach: {inside}/{len(should)} reached; across tenants: {across} "
                 f"reached" + (f"; across networks without a router: {stray} reached"
                               if stray else "") + f"; {verdict}")
    return "\n".join(lines)
