"""Restarts with traffic: the controller (unchanged intent) and one hypervisor's
ovs-vswitchd, at N ports, while two real VMs on different hypervisors ping each other at
100 packets per second.

    python -m bench.restart [--ports 1000] [--hypervisors 3]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import time

from netvirt.testing import gen
from bench.harness import Bench, flow_mods, save, table

PING_INTERVAL = 0.01


def start_ping(b: Bench, seconds: float) -> subprocess.Popen:
    count = int(seconds / PING_INTERVAL)
    return subprocess.Popen(b.lab.exec_argv("t0/p0", ["ping", "-n", "-q", "-i", str(PING_INTERVAL),
                                                      "-c", str(count), "-W", "1", "10.0.0.2"]),
                            stdout=subprocess.PIPE, text=True)


def lost(ping: subprocess.Popen) -> tuple[int, int]:
    out, _ = ping.communicate(timeout=120)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    sent, got = int(m[1]), int(m[2])
    return sent - got, sent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--hypervisors", type=int, default=3)
    args = ap.parse_args()
    n, h = args.ports, args.hypervisors
    cfg = gen.config(n, h, rundir=f"/run/netvirt-bench/restart-{n}-{h}",
                     real_ports={0: "hv1", 1: "hv2"})
    rows = []
    with Bench(f"restart-{n}-{h}", cfg) as b:
        b.ctl.start()
        b.apply()
        subprocess.run(b.lab.exec_argv("t0/p0", ["ping", "-c", "3", "-i", "0.2", "10.0.0.2"]),
                       capture_output=True)  # warm the underlay's tunnel ARP cache

        # 1. controller restart, unchanged intent
        ping = start_ping(b, 6)
        time.sleep(1)
        before = {hv: b.switch_flows(hv) for hv in cfg_hvs(cfg)}
        b.ctl.stop()
        t0 = time.monotonic()
        b.ctl.start_with(b.cfg_file)
        while True:
            try:
                st = b.ctl.wait_in_sync(1, timeout=60)
                break
            except Exception:  # the API is not up yet
                time.sleep(0.01)
        in_sync = time.monotonic() - t0
        drops, sent = lost(ping)
        rows.append({"event": "controller restart", "seconds_to_in_sync": in_sync,
                     "flow_mods": flow_mods(st), "packets_lost": drops, "packets_sent": sent,
                     "flows_unchanged": before == {hv: b.switch_flows(hv) for hv in cfg_hvs(cfg)}})

        # 2. ovs-vswitchd restart on the receiving hypervisor
        ping = start_ping(b, 8)
        time.sleep(1)
        mods0 = flow_mods(b.ctl.client.status())
        t_stop = time.monotonic()
        b.lab.stop_vswitchd("hv2")
        b.lab.start_vswitchd("hv2")
        t_start = time.monotonic()
        while True:
            st = b.ctl.client.status()
            hv2 = st["hypervisors"]["hv2"]
            if hv2["switch_connected"] and hv2["in_sync"] and st["in_sync"]:
                break
            time.sleep(0.005)
        repaired = time.monotonic() - t_start
        drops, sent = lost(ping)
        rows.append({"event": "ovs-vswitchd restart (hv2)", "seconds_to_in_sync": repaired,
                     "flow_mods": flow_mods(st) - mods0, "packets_lost": drops,
                     "packets_sent": sent, "vswitchd_down_seconds": t_start - t_stop})
    cols = ["event", "seconds_to_in_sync", "flow_mods", "packets_lost", "packets_sent",
            "flows_unchanged", "vswitchd_down_seconds"]
    print(table(rows, cols))
    print(f"wrote {save('restart', rows, {'ports': n, 'hypervisors': h})}")


def cfg_hvs(cfg: dict) -> list[str]:
    return [x["name"] for x in cfg["hypervisors"]]


if __name__ == "__main__":
    main()
