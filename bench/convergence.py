"""Convergence: seconds from `apply` until every hypervisor is in sync and healthy — every
port of the config on its switch with all its flows, each batch confirmed by a barrier —
for N ports over H hypervisors; then each switch's own flow count is checked against the
count compiled offline with every port bound.  Ports are OVS dummy ports (no traffic).

Three starting points:
- cold: empty hypervisors; netvirt creates br-int and every VM port through OVSDB, so
  ovs-vswitchd's own time to create thousands of ports is part of the figure;
- takeover: the VM ports exist on a bare br-int (guests running when netvirt first takes
  over a hypervisor): netvirt configures the bridge (protocols, datapath id, controller,
  tunnel port), which a userspace ovs-vswitchd applies by reconfiguring every port of the
  bridge — seconds at thousands of dummy ports — then it connects and takes the flows;
- bound: br-int and its VM ports exist exactly as netvirt makes them and the switch has no
  flows (a new controller for hypervisors netvirt configured before, or switches restarted
  with empty tables): netvirt's own work, and the switch's time to take the flows.

Each case runs --repeat times on a fresh lab; the table gives the median and the range.
The seconds split into: OVSDB (the slowest hypervisor's OVSDB pass), connect (apply until
the last switch connected), install (the rest: reading, compiling, sending, barriers).
switch_cpu_seconds is the busiest hypervisor's ovs-vswitchd CPU time during the apply:
when it is close to the seconds while the controller's own CPU is not, the switch is what
the apply waits for.

    python -m bench.convergence [--quick] [--repeat R]   (root; writes bench/results/convergence.json)
"""
from __future__ import annotations

import argparse
import time

from netvirt.testing import gen
from bench.harness import Bench, flow_mods, median, process_cpu_seconds, save, table
from netvirt.config import load_file

FULL = [(100, 1, "cold"), (100, 3, "cold"), (100, 10, "cold"), (1000, 1, "cold"),
        (1000, 3, "cold"), (1000, 10, "cold"), (1000, 3, "takeover"), (1000, 1, "bound"),
        (1000, 3, "bound"), (1000, 10, "bound"), (10000, 1, "bound"), (10000, 3, "bound"),
        (10000, 10, "bound"), (10000, 10, "takeover")]
QUICK = [(100, 3, "cold"), (1000, 3, "cold"), (1000, 10, "cold"), (1000, 3, "takeover"),
         (1000, 3, "bound")]
BATCH = 2000  # ports per ovs-vsctl call (argument list size)
BIG = 10000  # cases this large run once: setting up 10k bound ports takes minutes


def bind_ports(b: Bench, lc, configure_bridge: bool) -> None:
    """Create br-int and every VM port with the columns netvirt would give them; with
    ``configure_bridge``, br-int and its tunnel port too."""
    from netvirt.drivers.ovsdb import CONTROLLER_MAX_BACKOFF_MS
    from netvirt.overlay.ovsdb import compile_ovsdb, new_bridge_mac
    from netvirt.pipeline.layout import INT_BRIDGE
    from netvirt.topology import Topology

    topo = Topology(lc.config)
    for hv in topo.hypervisors:
        ovs = b.lab.ovs(hv)
        state = compile_ovsdb(topo, hv, "netdev", new_bridge_mac())
        br = next(x for x in state.bridges if x.name == INT_BRIDGE)
        cols = [f"datapath_type={br.datapath_type}", f"fail-mode={br.fail_mode}"]
        if configure_bridge:
            cols += [f"protocols={','.join(br.protocols)}"]
            cols += [f"other_config:{k}={v}" for k, v in br.other_config]
        ovs.vsctl("add-br", INT_BRIDGE, "--", "set", "bridge", INT_BRIDGE, *cols)
        vm_ports = [p for p in state.ports if p.type == "dummy"]
        if configure_bridge:
            vm_ports += [p for p in state.ports if p.type == "vxlan"]
        for i in range(0, len(vm_ports), BATCH):
            args = []
            for p in vm_ports[i:i + BATCH]:
                extra = [f"options:{k}={v}" for k, v in p.options]
                extra += [f'external_ids:{k}="{v}"' for k, v in p.external_ids]
                if p.ofport_request:
                    extra.append(f"ofport_request={p.ofport_request}")
                args += ["--", "add-port", INT_BRIDGE, p.name, "--", "set", "interface", p.name,
                         f"type={p.type}", *extra]
            ovs.vsctl(*args, timeout=1800)  # waits until ovs-vswitchd made them
        if configure_bridge:
            ovs.vsctl("set-controller", INT_BRIDGE, br.controller, "--", "set", "controller",
                      INT_BRIDGE, f"max_backoff={CONTROLLER_MAX_BACKOFF_MS}", timeout=1800)


def wait_connected(b: Bench, lc, timeout: float = 120) -> None:
    """Until every br-int is connected to the (new) controller: it manages nothing yet."""
    deadline = time.monotonic() + timeout
    for h in lc.config.hypervisors:
        while b.lab.ovs(h.name).vsctl("get", "controller", "br-int", "is_connected").strip() != "true":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{h.name}: br-int did not connect within {timeout}s")
            time.sleep(0.05)


def vswitchd_cpu(b: Bench) -> dict[str, float]:
    """CPU seconds each hypervisor's ovs-vswitchd has used so far."""
    return {hv: process_cpu_seconds(info["pids"]["ovs-vswitchd"])
            for hv, info in b.lab.state["hypervisors"].items()}


def expected_flows(lc) -> int:
    """The flow count with every configured port bound, compiled without any switch."""
    from netvirt.reconcile.compiler import compile_flows
    from netvirt.topology import Topology
    from netvirt.topology.inventory import Inventory

    topo = Topology(lc.config)
    total = 0
    for hv in topo.hypervisors:
        inv = Inventory({r.port.interface: i + 1 for i, r in enumerate(topo.ports_on(hv))})
        total += len(compile_flows(topo, hv, inv).flows)
    return total


def run_once(n: int, h: int, start: str, make=gen.config, name: str = "conv") -> dict:
    """One start of N ports over H hypervisors; ``make``: the config generator (routed
    variants pass their own)."""
    name = f"{name}-{n}-{h}-{start}"
    cfg = make(n, h, rundir=f"/run/netvirt-bench/{name}")
    with Bench(name, cfg) as b:
        lc = load_file(b.cfg_file)
        if start != "cold":
            bind_ports(b, lc, configure_bridge=start == "bound")
        b.ctl.start()
        if start == "bound":
            wait_connected(b, lc)
        cpu0, sw0 = b.ctl.cpu_seconds(), vswitchd_cpu(b)
        seconds, st = b.apply()
        cpu, sw1 = b.ctl.cpu_seconds() - cpu0, vswitchd_cpu(b)
        hvs = st["hypervisors"].values()
        connect = max(x["switch_connected_at"] for x in hvs) - b.apply_started_at
        desired = sum(x["desired_flows"] for x in hvs)
        on_switches = sum(b.switch_flows(hv) for hv in st["hypervisors"])
        return {"seconds": seconds, "ovsdb_seconds": max(x["last_ovsdb_seconds"] for x in hvs),
                "connect_seconds": connect, "install_seconds": seconds - connect,
                "flows": desired, "flow_mods": flow_mods(st),
                "verified": on_switches == desired == expected_flows(lc), "cpu_seconds": cpu,
                "peak_rss_mib": b.ctl.peak_rss_mib(),
                "switch_cpu_seconds": max(sw1[hv] - sw0[hv] for hv in sw0)}


def run_case(n: int, h: int, start: str, repeat: int) -> dict:
    runs = [run_once(n, h, start) for _ in range(1 if n >= BIG else repeat)]
    secs = [r["seconds"] for r in runs]
    row = {"ports": n, "hypervisors": h, "start": start, "runs": len(runs),
           "seconds": median(secs), "min": min(secs), "max": max(secs)}
    for k in ("ovsdb_seconds", "connect_seconds", "install_seconds", "cpu_seconds",
              "peak_rss_mib", "switch_cpu_seconds"):
        row[k] = median(r[k] for r in runs)
    row["flows"] = runs[0]["flows"]
    row["flows_per_port"] = row["flows"] / n
    row["flow_mods"] = max(r["flow_mods"] for r in runs)
    row["verified"] = all(r["verified"] for r in runs)
    row["each"] = runs
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (10k cases: 1)")
    args = ap.parse_args()
    rows = []
    for n, h, start in (QUICK if args.quick else FULL):
        rows.append(run_case(n, h, start, args.repeat))
        print({k: v for k, v in rows[-1].items() if k != "each"}, flush=True)
    cols = ["ports", "hypervisors", "start", "runs", "seconds", "min", "max", "ovsdb_seconds",
            "connect_seconds", "install_seconds", "flows", "flows_per_port", "flow_mods",
            "verified", "cpu_seconds", "switch_cpu_seconds", "peak_rss_mib"]
    print(table(rows, cols))
    print(f"wrote {save('convergence', rows)}")


if __name__ == "__main__":
    main()
