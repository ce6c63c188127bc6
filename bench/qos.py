"""What QoS costs, measured in one run:

- the node agent's tc reconcile at 100 VM devices on one hypervisor (veth pairs in a
  namespace of their own): a pass that puts htb on all of them, a pass with nothing to do
  (the read-back and the diff), a pass that changes every rate, and one that removes them;
  against iproute2's `tc -batch` making the same 200 objects in the same run (the baseline:
  one process, no read-back);
- TCP throughput between two VM ports without a policy, hv1 -> hv2, with no QoS anywhere and
  with QoS on their neighbours (a from_vm meter and htb on a port beside each of them, and
  another tenant's aggregate on both hypervisors), runs alternating on one lab: the stages
  every packet passes cost a port without a policy nothing (issue: >= 0.98x).

    python -m bench.qos [--repeat 3] [--seconds 4]   (root; writes bench/results/qos.json)
"""
from __future__ import annotations

import copy
import os
import subprocess
import time

from pyroute2 import NetNS, netns

from bench.datapath import iperf
from bench.harness import Bench, median, repeat_and_seconds, save, table
from netvirt.host.qos import QosPass
from netvirt.host.tc import KernelTc
from netvirt.testing import gen
from netvirt.testing.fakes import FakeNodeOvsdb
from netvirt.topology.qos import ToVm, encode_specs

DEVICES = 100


def reconcile_cost(repeat: int) -> list[dict]:
    ns = f"nvb-qos-{os.getpid()}"
    netns.create(ns)
    try:
        with NetNS(ns) as ipr:
            for i in range(DEVICES):
                ipr.link("add", ifname=f"q{i}", kind="veth", peer=f"q{i}p")
                ipr.link("set", index=ipr.link_lookup(ifname=f"q{i}")[0], state="up")
        names = [f"q{i}" for i in range(DEVICES)]
        times: dict[str, list[float]] = {k: [] for k in (
            "put htb on every device", "a node restart: read back, diff, nothing to do",
            "an event with nothing new (counters at most)", "change every rate",
            "remove them all", "baseline: tc -batch, the same objects")}
        word = FakeNodeOvsdb()  # the benchmark times tc, not OVSDB
        kernel = KernelTc(lambda: NetNS(ns))  # the node's own code, in the namespace
        with NetNS(ns) as ipr:
            index = {n: ipr.link_lookup(ifname=n)[0] for n in names}

        def timed(specs: dict, node: QosPass) -> float:
            word.specs = encode_specs(specs)
            t0 = time.perf_counter()
            node.run(index, netem_ok=False)
            return time.perf_counter() - t0
        for _ in range(repeat):
            node = QosPass(word, kernel)
            ten = {n: ToVm(f"tenant/t/port/{n}", 10_000_000, 12500) for n in names}
            times["put htb on every device"].append(timed(ten, node))
            node = QosPass(word, kernel)
            times["a node restart: read back, diff, nothing to do"].append(timed(ten, node))
            times["an event with nothing new (counters at most)"].append(timed(ten, node))
            times["change every rate"].append(timed({n: s._replace(rate=20_000_000)
                                                     for n, s in ten.items()}, node))
            times["remove them all"].append(timed({}, node))
        kernel.close()
        batch = "".join(f"qdisc replace dev {n} root handle 4e56: htb default 1\n"
                        f"class replace dev {n} parent 4e56: classid 4e56:1 htb rate 10mbit "
                        f"burst 12500b\n" for n in names)
        undo = "".join(f"qdisc del dev {n} root\n" for n in names)
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run(["ip", "netns", "exec", ns, "tc", "-batch", "-"], input=batch,
                           text=True, check=True)
            times["baseline: tc -batch, the same objects"].append(time.perf_counter() - t0)
            subprocess.run(["ip", "netns", "exec", ns, "tc", "-batch", "-"], input=undo,
                           text=True, check=True)
    finally:
        netns.remove(ns)  # its veths go with it
    base = median(times["baseline: tc -batch, the same objects"])
    return [{"case": what, "ms_per_port": median(t) * 1000 / DEVICES,
             "total_ms": median(t) * 1000, "vs_tc_batch": median(t) / base, "runs": len(t)}
            for what, t in times.items()]


def _neighbours(cfg: dict) -> dict:
    """The same lab with QoS on the ports beside the measured pair, and an aggregate of
    another tenant on both hypervisors."""
    cfg = copy.deepcopy(cfg)
    t0, t1 = cfg["tenants"][0], cfg["tenants"][1]
    t0["qos_policies"] = [{"name": "p", "to_vm": {"rate": "50mbit"},
                           "from_vm": {"rate": "50mbit", "dscp": 10}}]
    for p in t0["ports"]:
        if p["name"] in ("p2", "p3"):
            p["qos_policy"] = "p"
    t1["qos_policies"] = [{"name": "agg", "to_vm": {"rate": "1gbit"},
                           "from_vm": {"rate": "1gbit"}}]
    t1["aggregate_qos_policy"] = "agg"
    return cfg


def throughput(repeat: int, seconds: float) -> list[dict]:
    base = gen.config(40, 2, rundir="/run/netvirt-bench/qos",
                      real_ports={0: "hv1", 1: "hv2", 2: "hv1", 3: "hv2", 20: "hv1", 21: "hv2"},
                      tenant_nets=1)
    res: dict[str, list[float]] = {"no QoS anywhere": [], "QoS on the neighbours": []}
    with Bench("qos", base) as b:
        plain, shaped = b.cfg_file, b.write(_neighbours(base), b.dir / "neighbours.yaml")
        b.ctl.start()
        client, server = b.lab.vm("t0/p0")["netns"], b.lab.vm("t0/p1")["netns"]
        subprocess.run(["ip", "netns", "exec", client, "ping", "-c", "3", "-i", "0.2",
                        "10.0.0.2"], capture_output=True)
        for _ in range(repeat):
            for name, cfg in (("no QoS anywhere", plain), ("QoS on the neighbours", shaped)):
                b.apply(cfg)
                time.sleep(1)  # the node agents put the neighbours' htb in place
                res[name].append(iperf(client, server, "10.0.0.2", seconds))
    rows = [{"case": f"t0/p0 (hv1) -> t0/p1 (hv2), no policy; {name}", "tcp_mbps": median(r),
             "min": min(r), "max": max(r), "runs": len(r)} for name, r in res.items()]
    rows.append({"case": "ratio: with QoS beside / without", "tcp_mbps":
                 rows[1]["tcp_mbps"] / rows[0]["tcp_mbps"]})
    return rows


def main() -> None:
    args = repeat_and_seconds(__doc__)
    rc = reconcile_cost(args.repeat)
    print(table(rc, ["case", "ms_per_port", "total_ms", "vs_tc_batch", "runs"]))
    tp = throughput(args.repeat, args.seconds)
    print(table(tp, ["case", "tcp_mbps", "min", "max", "runs"]))
    print(f"wrote {save('qos', rc + tp)}")


if __name__ == "__main__":
    main()
