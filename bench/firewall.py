"""What the firewall costs, against the same path without rules, measured in one run:

- TCP throughput (iperf3) and new TCP connections per second between two VMs on two
  hypervisors, with both ports firewalled by a group of 20 stateful rules and with neither
  firewalled (runs alternate on the same lab; the config is re-applied between them);
- flows: what a rule costs per hypervisor where its group has ports, compiled offline at
  1000 firewalled ports on 3 hypervisors (10 tenants of 100, a group in each), for a plain
  rule and a remote-group rule, and what firewalling a port costs.

    python -m bench.firewall [--repeat 3] [--seconds 4]   (root; writes bench/results/firewall.json)
"""
from __future__ import annotations

import copy
import subprocess

from bench.datapath import conn_rate, iperf
from bench.harness import Bench, median, repeat_and_seconds, save, table
from netvirt.config import load_data
from netvirt.reconcile.compiler import compile_flows
from netvirt.testing import gen
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

# 18 rules the benchmark traffic does not use, then the two it does (iperf3, tcp_rate)
RULES = ([{"direction": "ingress", "protocol": "tcp", "ports": str(10000 + i)} for i in range(9)]
         + [{"direction": "ingress", "protocol": "udp", "ports": str(20000 + i)} for i in range(5)]
         + [{"direction": "ingress", "protocol": "icmp", "icmp_type": t} for t in (0, 3, 8, 11)]
         + [{"direction": "ingress", "protocol": "tcp", "ports": "5201"},
            {"direction": "ingress", "protocol": "tcp", "ports": "5001"}])


def firewalled(cfg: dict, ports: set[str] | None = None, rules=RULES) -> dict:
    """``cfg`` with a group of ``rules`` in every tenant, on ``ports`` (None: every port)."""
    cfg = copy.deepcopy(cfg)
    for t in cfg["tenants"]:
        t["security_groups"] = [{"name": "bench", "rules": rules}]
        for p in t["ports"]:
            if ports is None or p["name"] in ports:
                p["security_groups"] = ["bench"]
    return cfg


def datapath(repeat: int, seconds: float) -> list[dict]:
    base = gen.config(40, 2, rundir="/run/netvirt-bench/firewall", real_ports={0: "hv1", 1: "hv2"})
    res = {name: {"mbps": [], "conn": []} for name in ("no rules", "20 stateful rules")}
    with Bench("firewall", base) as b:
        files = {"no rules": b.cfg_file,
                 "20 stateful rules": b.write(firewalled(base, {"p0", "p1"}),
                                              b.cfg_file.with_name("firewalled.yaml"))}
        b.ctl.start()
        client, server = b.lab.vm("t0/p0")["netns"], b.lab.vm("t0/p1")["netns"]
        for _ in range(repeat):
            for name, f in files.items():
                b.apply(f)
                subprocess.run(["ip", "netns", "exec", client, "ping", "-c", "2", "-i", "0.2",
                                "10.0.0.2"], capture_output=True)  # ARP, tunnel neighbours
                res[name]["mbps"].append(iperf(client, server, "10.0.0.2", seconds))
                res[name]["conn"].append(conn_rate(client, server, "10.0.0.2", seconds / 2))
    rows = [{"case": f"p0 (hv1) -> p1 (hv2), {name}", "tcp_mbps": median(r["mbps"]),
             "min": min(r["mbps"]), "max": max(r["mbps"]), "new_tcp_conn_per_s": median(r["conn"]),
             "runs": len(r["mbps"])} for name, r in res.items()]
    rows.append({"case": "ratio firewalled / not",
                 "tcp_mbps": rows[1]["tcp_mbps"] / rows[0]["tcp_mbps"],
                 "new_tcp_conn_per_s": rows[1]["new_tcp_conn_per_s"] / rows[0]["new_tcp_conn_per_s"]})
    return rows


def _flows(cfg: dict) -> dict[str, int]:
    topo = Topology(load_data(cfg, "", "bench.yaml").config)
    out = {}
    for hv in topo.hypervisors:
        inv = Inventory({r.port.interface: i + 1 for i, r in enumerate(topo.ports_on(hv))})
        out[hv] = len(compile_flows(topo, hv, inv).flows)
    return out


def flow_cost() -> list[dict]:
    base = gen.config(1000, 3, rundir="/run/netvirt-bench/firewall-flows")
    rows = []
    groups = len(base["tenants"])  # a group per tenant, with ports on every hypervisor
    plain = [{"direction": "ingress", "protocol": "tcp", "ports": str(10000 + i)} for i in range(20)]
    remote = [{"direction": "ingress", "protocol": "tcp", "ports": str(10000 + i),
               "remote_group": "bench"} for i in range(20)]
    none = _flows(base)
    empty = _flows(firewalled(base, rules=[]))
    for name, rules in (("plain (tcp port)", plain), ("remote group (100 members)", remote)):
        with_rules = _flows(firewalled(base, rules=rules))
        per_hv = [(with_rules[hv] - empty[hv]) / (len(rules) * groups) for hv in sorted(none)]
        rows.append({"what": f"20 rules, {name}", "flows_per_rule_per_hv": median(per_hv),
                     "flows_hv1": with_rules["hv1"]})
    rows.append({"what": "firewalling 1000 ports (no rules), per port",
                 "flows_per_rule_per_hv": None,
                 "flows_hv1": empty["hv1"],
                 "flows_per_port": sum(empty[h] - none[h] for h in none) / 1000})
    return rows


def main() -> None:
    args = repeat_and_seconds(__doc__)
    fl = flow_cost()
    print(table(fl, ["what", "flows_per_rule_per_hv", "flows_hv1", "flows_per_port"]))
    dp = datapath(args.repeat, args.seconds)
    print(table(dp, ["case", "tcp_mbps", "min", "max", "new_tcp_conn_per_s", "runs"]))
    print(f"wrote {save('firewall', fl + dp)}")


if __name__ == "__main__":
    main()
