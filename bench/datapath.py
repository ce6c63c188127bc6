"""Datapath cost of the netvirt pipeline: TCP throughput and new TCP connections per second
between VMs on two hypervisors, through netvirt's br-int (VXLAN, full pipeline) and, in the
same run, through a bare bridge with the NORMAL action over its own VXLAN port (baseline).
Runs alternate between the two, and medians are compared.

    python -m bench.datapath [--runs 3] [--seconds 4]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from pyroute2 import NetNS, netns

from netvirt.testing import gen
from bench.harness import Bench, median, save, table
from netvirt.host.lab import hv_netns

HERE = Path(__file__).resolve().parent
BASE_IPS = {"hv1": "10.99.0.1", "hv2": "10.99.0.2"}


class Baseline:
    """A VM namespace per hypervisor on br-base (NORMAL, fixed-remote VXLAN, key 999)."""

    def __init__(self, b: Bench, underlay: dict[str, str]):
        self.b, self.underlay, self.made = b, underlay, []

    def __enter__(self):
        peers = {"hv1": "hv2", "hv2": "hv1"}
        for hv, ip in BASE_IPS.items():
            ovs = self.b.lab.ovs(hv)
            ovs.vsctl("add-br", "br-base", "--", "set", "bridge", "br-base", "datapath_type=netdev",
                      "fail-mode=standalone", "--", "add-port", "br-base", "base-vx", "--", "set",
                      "interface", "base-vx", "type=vxlan",
                      f"options:remote_ip={self.underlay[peers[hv]]}", "options:key=999")
            ns = f"nvb-base-{hv}"
            netns.create(ns)
            self.made.append(ns)
            with NetNS(ns) as v:
                v.link("add", ifname="eth0", kind="veth", mtu=1450,
                       peer={"ifname": f"base-{hv}", "net_ns_fd": hv_netns(hv, "nvb"), "mtu": 1450})
                i = v.link_lookup(ifname="eth0")[0]
                v.addr("add", index=i, address=ip, prefixlen=24)
                v.link("set", index=i, state="up")
                v.link("set", index=v.link_lookup(ifname="lo")[0], state="up")
            with NetNS(hv_netns(hv, "nvb")) as h:
                h.link("set", index=h.link_lookup(ifname=f"base-{hv}")[0], state="up")
            for where, dev in ((ns, "eth0"), (hv_netns(hv, "nvb"), f"base-{hv}")):
                subprocess.run(["ip", "netns", "exec", where, "ethtool", "-K", dev, "tx", "off"],
                               check=True, capture_output=True)
            ovs.vsctl("add-port", "br-base", f"base-{hv}")
        return self

    def __exit__(self, *exc):
        for ns in self.made:
            netns.remove(ns)


def iperf(client_ns: str, server_ns: str, ip: str, seconds: float) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", ip],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        r = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", ip, "-t",
                            str(seconds), "-J"], capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        srv.kill()
        srv.wait()


def conn_rate(client_ns: str, server_ns: str, ip: str, seconds: float) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable,
                            str(HERE / "tcp_rate.py"), "server", "5001"], stdout=subprocess.PIPE,
                           text=True)
    try:
        srv.stdout.readline()
        r = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable,
                            str(HERE / "tcp_rate.py"), "client", ip, "5001", str(seconds)],
                           capture_output=True, text=True, timeout=60, check=True)
        return float(r.stdout)
    finally:
        srv.kill()
        srv.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4)
    args = ap.parse_args()
    cfg = gen.config(20, 2, rundir="/run/netvirt-bench/datapath", real_ports={0: "hv1", 1: "hv2"})
    underlay = {x["name"]: x["underlay_ip"].split("/")[0] for x in cfg["hypervisors"]}
    res = {"netvirt": {"mbps": [], "conn_per_s": []}, "baseline": {"mbps": [], "conn_per_s": []}}
    with Bench("datapath", cfg) as b:
        b.ctl.start()
        b.apply()
        with Baseline(b, underlay):
            paths = {"netvirt": (b.lab.vm("t0/p0")["netns"], b.lab.vm("t0/p1")["netns"], "10.0.0.2"),
                     "baseline": ("nvb-base-hv1", "nvb-base-hv2", BASE_IPS["hv2"])}
            for c, _, ip in paths.values():  # warm ARP and tunnel neighbour caches
                subprocess.run(["ip", "netns", "exec", c, "ping", "-c", "3", "-i", "0.2", ip],
                               capture_output=True)
            for _ in range(args.runs):
                for name, (c, s, ip) in paths.items():
                    res[name]["mbps"].append(iperf(c, s, ip, args.seconds))
                    res[name]["conn_per_s"].append(conn_rate(c, s, ip, args.seconds / 2))
    rows = [{"path": name, "tcp_mbps": median(r["mbps"]),
             "new_tcp_conn_per_s": median(r["conn_per_s"]), "runs": len(r["mbps"])}
            for name, r in res.items()]
    ratio = rows[0]["tcp_mbps"] / rows[1]["tcp_mbps"]
    conn_ratio = rows[0]["new_tcp_conn_per_s"] / rows[1]["new_tcp_conn_per_s"]
    print(table(rows, ["path", "tcp_mbps", "new_tcp_conn_per_s", "runs"]))
    print(f"throughput ratio netvirt/baseline: {ratio:.3f}; connections ratio: {conn_ratio:.3f}")
    print(f"wrote {save('datapath', rows, {'throughput_ratio': ratio, 'conn_ratio': conn_ratio, 'samples': res})}")


if __name__ == "__main__":
    main()
