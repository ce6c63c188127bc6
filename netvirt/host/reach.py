"""Reachability probes between VM ports of a lab, by real traffic.

A target counts as reached only if the ping is answered *and* the source resolved the
target's IP to the target's own MAC: with overlapping tenant subnets, an answer from another
tenant's VM with the same IP would otherwise look like success.
"""
from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from netvirt.config.schema import Config
from netvirt.host.lab import Lab, vm_netns


def ping(ns: str, ip: str, count: int = 2, timeout: float = 1.0) -> bool:
    """True if any of ``count`` echo requests is answered."""
    r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count),
                        "-i", "0.2", "-W", str(timeout), ip], capture_output=True)
    return r.returncode == 0


def neighbor_mac(ns: str, ip: str) -> str | None:
    r = subprocess.run(["ip", "-n", ns, "-j", "neigh", "show", ip], capture_output=True, text=True)
    for e in json.loads(r.stdout or "[]"):
        if e.get("lladdr"):
            return e["lladdr"].lower()
    return None


def reaches(src_ns: str, ip: str, mac: str) -> bool:
    subprocess.run(["ip", "-n", src_ns, "neigh", "flush", "to", ip], capture_output=True)
    return ping(src_ns, ip) and neighbor_mac(src_ns, ip) == mac


@dataclass
class Matrix:
    ports: list[tuple[str, str]]  # (tenant, port)
    reached: dict  # (src, dst) -> bool

    def expected(self, src, dst) -> bool:
        return src[0] == dst[0]

    @property
    def as_expected(self) -> bool:
        return all(v == self.expected(s, d) for (s, d), v in self.reached.items())


def matrix(lab: Lab, cfg: Config) -> Matrix:
    targets = [(t.name, p.name, str(p.ips[0]), p.mac) for t in cfg.tenants for p in t.ports]
    ports = [(t, p) for t, p, _, _ in targets]

    def from_source(src):
        ns = vm_netns(*src, lab.prefix)
        return {(src, (t, p)): reaches(ns, ip, mac) for t, p, ip, mac in targets if (t, p) != src}

    reached = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for part in pool.map(from_source, ports):
            reached.update(part)
    return Matrix(ports, reached)


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
                 "!! = reached across tenants")
    verdict = "as expected" if m.as_expected else "NOT as expected"
    inside = sum(1 for (s, d), v in m.reached.items() if m.expected(s, d) and v)
    inside_all = sum(1 for (s, d) in m.reached if m.expected(s, d))
    across = sum(1 for (s, d), v in m.reached.items() if not m.expected(s, d) and v)
    lines.append(f"inside tenants: {inside}/{inside_all} reached; across tenants: {across} "
                 f"reached; {verdict}")
    return "\n".join(lines)
