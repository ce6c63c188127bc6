"""The isolation proof's cost, as apply pays it: a first proof of N ports (cold: the
controller's start, or a first apply), and the proof of the next revision that adds one
port (what every churn apply pays).  Baseline in the same run: compiling every hypervisor
from scratch (what the proof compiles, and what the agents compile anyway), as a ratio.
The proof includes holding every firewall to its security groups (inspect/groups.py).

    python -m bench.isolation [--sizes 1000 10000] [--hypervisors 3 10] [--repeat 3]
"""
from __future__ import annotations

import argparse
import copy
import time

from bench.harness import median, save, table
from netvirt.config import load_text
from netvirt.inspect.proof import IsolationProof, provisional
from netvirt.reconcile.compiler import compile_flows
from netvirt.testing import gen
from netvirt.topology import Topology


def _config(n: int, h: int, firewalled: bool) -> dict:
    data = gen.config(n, h, routed=firewalled)
    if firewalled:  # every other port of the first tenant behind a group
        t = data["tenants"][0]
        t["security_groups"] = [{"name": "web", "rules": [
            {"direction": "ingress", "protocol": "tcp", "ports": "80"},
            {"direction": "ingress", "protocol": "icmp", "remote_group": "web"}]}]
        for p in t["ports"][::2]:
            p["security_groups"] = ["web"]
    return data


def run(n: int, h: int, firewalled: bool, repeat: int) -> dict:
    data = _config(n, h, firewalled)
    topo = Topology(load_text(gen.text(data), "bench.yaml").config)
    switches = provisional(topo, {})  # the switches have every port of the first revision
    t = data["tenants"][0]
    t["ports"].append(dict(copy.deepcopy(t["ports"][0]), name="extra", mac="02:aa:00:00:00:01",
                           ips=["10.0.0.250"], interface="dextra"))
    topo2 = Topology(load_text(gen.text(data), "bench.yaml").config)
    compile_s, cold, again, flows = [], [], [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        per_hv = [compile_flows(topo, hv, switches[hv]) for hv in topo.hypervisors]
        compile_s.append(time.perf_counter() - t0)
        proof = IsolationProof()
        first = proof.run(topo, switches)
        second = proof.run(topo2, switches)
        assert not first.violations and not second.violations
        cold.append(first.seconds)
        again.append(second.seconds)
        flows = sum(len(d.by_key) for d in per_hv)
    return {"ports": n, "hypervisors": h, "routed_firewalled": firewalled, "flows": flows,
            "compile_s": median(compile_s), "proof_cold_s": median(cold),
            "proof_add_port_s": median(again), "cold_vs_compile": median(cold) / median(compile_s)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--hypervisors", type=int, nargs="+", default=[3, 10])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = [run(n, h, fw, args.repeat) for n in args.sizes for h in args.hypervisors
            for fw in (False, True)]
    print(table(rows, ["ports", "hypervisors", "routed_firewalled", "flows", "compile_s",
                       "proof_cold_s", "proof_add_port_s", "cold_vs_compile"]))
    print(f"wrote {save('isolation', rows)}")


if __name__ == "__main__":
    main()
