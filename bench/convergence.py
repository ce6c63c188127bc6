"""Convergence: seconds from `apply` until every flow is installed (barrier-confirmed) on
every hypervisor, for N ports over H hypervisors; then the switches' own flow counts are
checked against the desired ones.  Ports are OVS dummy ports (no traffic).

    python -m bench.convergence [--quick]      (root; writes bench/results/convergence.json)
"""
from __future__ import annotations

import argparse

from bench import gen
from bench.harness import Bench, flow_mods, save, table

FULL = [(100, 1), (100, 3), (100, 10), (1000, 1), (1000, 3), (1000, 10), (10000, 1),
        (10000, 3), (10000, 10)]
QUICK = [(100, 3), (1000, 3), (1000, 10)]


def run_case(n: int, h: int) -> dict:
    cfg = gen.config(n, h, rundir=f"/run/netvirt-bench/conv-{n}-{h}")
    with Bench(f"conv-{n}-{h}", cfg) as b:
        b.ctl.start()
        cpu0 = b.ctl.cpu_seconds()
        seconds, st = b.apply()
        cpu = b.ctl.cpu_seconds() - cpu0
        desired = sum(x["desired_flows"] for x in st["hypervisors"].values())
        on_switches = sum(b.switch_flows(hv) for hv in st["hypervisors"])
        return {"ports": n, "hypervisors": h, "seconds": seconds,
                "ovsdb_seconds": max(x["last_ovsdb_seconds"] for x in st["hypervisors"].values()),
                "flows": desired, "flows_per_port": desired / n, "flow_mods": flow_mods(st),
                "verified": on_switches == desired, "cpu_seconds": cpu,
                "peak_rss_mib": b.ctl.peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows = [run_case(n, h) for n, h in (QUICK if args.quick else FULL)]
    cols = ["ports", "hypervisors", "seconds", "ovsdb_seconds", "flows", "flows_per_port",
            "flow_mods", "verified", "cpu_seconds", "peak_rss_mib"]
    print(table(rows, cols))
    print(f"wrote {save('convergence', rows)}")


if __name__ == "__main__":
    main()
