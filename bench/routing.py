"""What the router costs, each against a baseline measured in the same run:

- convergence: 1000 ports in 10 networks of 100 on 3 hypervisors, cold, with a router over
  the 10 networks and without (runs alternate);
- churn at that scale, routed: add one port, and add one router interface (to a small
  network that had none), with the flow mods each took;
- TCP throughput between two VMs on two hypervisors, routed between two subnets and
  switched in one (runs alternate).

    python -m bench.routing [--repeat 3] [--seconds 4]   (root; writes bench/results/routing.json)
"""
from __future__ import annotations

import functools
import subprocess

from bench.churn import measure
from bench.convergence import run_once
from bench.datapath import iperf
from bench.harness import Bench, median, repeat_and_seconds, save, table
from netvirt.testing import gen

PORTS, HVS, NET_SIZE, NETS = 1000, 3, 100, 10


def _make(routed: bool):
    return functools.partial(gen.config, net_size=NET_SIZE, tenant_nets=NETS + 1, routed=routed)


def convergence(repeat: int) -> list[dict]:
    runs: dict[str, list[dict]] = {"switched": [], "routed": []}
    for _ in range(repeat):
        for name in runs:
            runs[name].append(run_once(PORTS, HVS, "cold", make=_make(name == "routed"),
                                       name=f"routing-{name}"))
    rows = []
    for name, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        rows.append({"case": f"converge {PORTS} ports in {NETS} networks, {name}",
                     "seconds": median(secs), "min": min(secs), "max": max(secs),
                     "flows": rs[0]["flows"], "flows_per_port": rs[0]["flows"] / PORTS,
                     "verified": all(r["verified"] for r in rs), "runs": len(rs)})
    rows.append({"case": "ratio routed / switched",
                 "seconds": rows[1]["seconds"] / rows[0]["seconds"]})
    return rows


def churn(repeat: int) -> list[dict]:
    base = _make(True)(PORTS, HVS, rundir="/run/netvirt-bench/routing-churn")
    t = base["tenants"][0]
    # an eleventh, small network, not on the router yet, with one port
    t["networks"].append({"name": "extra", "subnets": [{"cidr": "10.200.0.0/24",
                                                        "gateway": "10.200.0.254"}]})
    t["ports"].append({"name": "extra1", "network": "extra", "hypervisor": "hv2",
                       "ips": ["10.200.0.1"], "mac": "02:aa:00:00:00:02",
                       "interface_type": "dummy", "interface": "dextra1"})

    def add_port(c):
        c["tenants"][0]["ports"].append({
            "name": "new", "network": "n0", "hypervisor": "hv1", "ips": ["10.0.0.250"],
            "mac": "02:aa:00:00:00:01", "interface_type": "dummy", "interface": "dnew"})

    def add_interface(c):
        c["tenants"][0]["routers"][0]["interfaces"].append({"network": "extra"})

    def nothing(c):
        pass

    with Bench("routing-churn", base) as b:
        return measure(b, base, [("no change (baseline)", nothing, None),
                                 ("add port (routed network)", add_port, None),
                                 ("add router interface", add_interface, None)], repeat)


def datapath(repeat: int, seconds: float) -> list[dict]:
    # p0 on hv1 and p1 on hv2 share network n0; p20 on hv2 is on n1, routed from n0
    cfg = gen.config(40, 2, rundir="/run/netvirt-bench/routing-datapath", routed=True,
                     real_ports={0: "hv1", 1: "hv2", 20: "hv2"})
    res: dict[str, list[float]] = {"switched": [], "routed": []}
    with Bench("routing-datapath", cfg) as b:
        b.ctl.start()
        b.apply()
        client = b.lab.vm("t0/p0")["netns"]
        paths = {"switched": (b.lab.vm("t0/p1")["netns"], "10.0.0.2"),
                 "routed": (b.lab.vm("t0/p20")["netns"], "10.0.1.1")}
        for _, ip in paths.values():  # warm ARP and the tunnel neighbour caches
            subprocess.run(["ip", "netns", "exec", client, "ping", "-c", "3", "-i", "0.2", ip],
                           capture_output=True)
        for _ in range(repeat):
            for name, (server, ip) in paths.items():
                res[name].append(iperf(client, server, ip, seconds))
    rows = [{"case": f"TCP across hypervisors, {name}", "mbps": median(v), "min": min(v),
             "max": max(v), "runs": len(v)} for name, v in res.items()]
    rows.append({"case": "ratio routed / switched", "mbps": rows[1]["mbps"] / rows[0]["mbps"]})
    return rows


def main() -> None:
    args = repeat_and_seconds(__doc__)
    conv = convergence(args.repeat)
    print(table(conv, ["case", "seconds", "min", "max", "flows", "flows_per_port", "verified",
                       "runs"]))
    ch = churn(args.repeat)
    print(table(ch, ["change", "seconds", "max", "flow_mods", "runs"]))
    dp = datapath(args.repeat, args.seconds)
    print(table(dp, ["case", "mbps", "min", "max", "runs"]))
    print(f"wrote {save('routing', conv + ch + dp, {'ports': PORTS, 'hypervisors': HVS})}")


if __name__ == "__main__":
    main()
