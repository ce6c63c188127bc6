"""Convergence: seconds from `apply` until every flow is installed (barrier-confirmed) on
every hypervisor, for N ports over H hypervisors; then the switches' own flow counts are
checked against the desired ones.  Ports are OVS dummy ports (no traffic).

Two starting points:
- cold: empty hypervisors; netvirt creates br-int and every VM port through OVSDB, so
  ovs-vswitchd's own time to create thousands of ports is part of the figure;
- bound: the VM ports already exist on br-int as netvirt would create them (guests that are
  running when netvirt takes over, or after a controller migration): netvirt's own work.

    python -m bench.convergence [--quick]      (root; writes bench/results/convergence.json)
"""
from __future__ import annotations

import argparse

from bench import gen
from bench.harness import Bench, flow_mods, save, table
from netvirt.config import load_file

FULL = [(100, 1, "cold"), (100, 3, "cold"), (100, 10, "cold"), (1000, 1, "cold"),
        (1000, 3, "cold"), (1000, 10, "cold"), (1000, 3, "bound"), (10000, 1, "bound"),
        (10000, 3, "bound"), (10000, 10, "bound")]
QUICK = [(100, 3, "cold"), (1000, 3, "cold"), (1000, 10, "cold"), (1000, 3, "bound")]
BATCH = 2000  # ports per ovs-vsctl call (argument list size)


def bind_ports(b: Bench, lc) -> None:
    """Create br-int and every VM port with the columns netvirt would give them."""
    from netvirt.controller.ovsdb_state import compile_ovsdb
    from netvirt.topology import Topology

    topo = Topology(lc.config)
    for hv in topo.hypervisors:
        ovs = b.lab.ovs(hv)
        ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                  "fail-mode=secure")
        vm_ports = [p for p in compile_ovsdb(topo, hv, "netdev").ports if p.type == "dummy"]
        for i in range(0, len(vm_ports), BATCH):
            args = []
            for p in vm_ports[i:i + BATCH]:
                ids = [f'external_ids:{k}="{v}"' for k, v in p.external_ids]
                args += ["--", "add-port", "br-int", p.name, "--", "set", "interface", p.name,
                         "type=dummy", *ids]
            ovs.vsctl(*args, timeout=300)  # waits until ovs-vswitchd made them


def run_case(n: int, h: int, start: str = "cold") -> dict:
    name = f"conv-{n}-{h}-{start}"
    cfg = gen.config(n, h, rundir=f"/run/netvirt-bench/{name}")
    with Bench(name, cfg) as b:
        if start == "bound":
            bind_ports(b, load_file(b.cfg_file))
        b.ctl.start()
        cpu0 = b.ctl.cpu_seconds()
        seconds, st = b.apply()
        cpu = b.ctl.cpu_seconds() - cpu0
        desired = sum(x["desired_flows"] for x in st["hypervisors"].values())
        on_switches = sum(b.switch_flows(hv) for hv in st["hypervisors"])
        return {"ports": n, "hypervisors": h, "start": start, "seconds": seconds,
                "ovsdb_seconds": max(x["last_ovsdb_seconds"] for x in st["hypervisors"].values()),
                "flows": desired, "flows_per_port": desired / n, "flow_mods": flow_mods(st),
                "verified": on_switches == desired, "cpu_seconds": cpu,
                "peak_rss_mib": b.ctl.peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows = []
    for n, h, start in (QUICK if args.quick else FULL):
        rows.append(run_case(n, h, start))
        print(rows[-1], flush=True)
    cols = ["ports", "hypervisors", "start", "seconds", "ovsdb_seconds", "flows", "flows_per_port",
            "flow_mods", "verified", "cpu_seconds", "peak_rss_mib"]
    print(table(rows, cols))
    print(f"wrote {save('convergence', rows)}")


if __name__ == "__main__":
    main()
