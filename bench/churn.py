"""Churn at N ports: add one port (netvirt creates its OVS port; or the VIF exists already,
as when libvirt made it), remove one port, change one port's IP.  For each: seconds
from `apply` until every hypervisor is in sync and healthy (an added port counts once its
local flows are in), and the flow mods it took (target: O(1), independent of N).  The
baseline, measured in the same run, is an apply of the unchanged config: what any apply
costs (the HTTP round trip, validation, every agent's pass) before the change's own work.

    python -m bench.churn [--ports 1000] [--hypervisors 3] [--repeat 5]
"""
from __future__ import annotations

import argparse
import copy
import time

from netvirt.testing import gen
from bench.harness import Bench, flow_mods, median, save, table


EXTRA = {"name": "extra", "hypervisor": "hv1", "ips": ["10.0.0.250"], "mac": "02:aa:00:00:00:01",
         "interface_type": "dummy", "interface": "dextra"}


def vif_exists(b: Bench, cfg: dict) -> None:
    """What libvirt does before netvirt hears of a guest: its tap is on br-int, with the
    port's iface-id, and the switch has given it an ofport."""
    ovs = b.lab.ovs("hv1")
    ovs.vsctl("--may-exist", "add-port", "br-int", EXTRA["interface"], "--", "set", "interface",
              EXTRA["interface"], "type=dummy",
              f'external_ids:iface-id="{cfg["tenants"][0]["name"]}/{EXTRA["name"]}"')
    # without --no-wait, ovs-vsctl returned once ovs-vswitchd had applied it


def changes(cfg: dict):
    """(name, change to the config, what happens on the hypervisor before the apply)."""
    def add(c):
        t = c["tenants"][0]
        t["ports"].append({**EXTRA, "network": t["networks"][0]["name"]})

    def remove(c):
        c["tenants"][-1]["ports"].pop()

    def change_ip(c):
        c["tenants"][0]["ports"][1]["ips"] = ["10.0.0.249"]

    def nothing(c):
        pass

    return [("no change (baseline)", nothing, None), ("add port", add, None),
            ("add port, VIF exists", add, vif_exists), ("remove port", remove, None),
            ("change IP", change_ip, None)]


def measure(b: Bench, base: dict, todo, repeat: int) -> list[dict]:
    """Apply the base config, then each change of ``todo`` and back, ``repeat`` times:
    rows of the apply's seconds (median, slowest) and the most flow mods a change took."""
    b.ctl.start()
    seconds, st = b.apply()
    rows = [{"change": f"initial ({len([p for t in base['tenants'] for p in t['ports']])} "
                       f"ports)", "seconds": seconds, "flow_mods": flow_mods(st)}]
    for name, change, on_hypervisor in todo:
        changed = copy.deepcopy(base)
        change(changed)
        path = b.write(changed, b.dir / "changed.yaml")
        times, mods, switch_alone = [], [], []
        for _ in range(repeat):  # forth and back: each apply is one change
            for target in (path, b.cfg_file):
                if target == path and on_hypervisor is not None:
                    t0 = time.monotonic()
                    on_hypervisor(b, base)
                    switch_alone.append(time.monotonic() - t0)
                before = flow_mods(b.ctl.client.status())
                seconds, st = b.apply(target)
                if target == path:
                    times.append(seconds)
                    mods.append(flow_mods(st) - before)
        if switch_alone:  # the first run made the port; the others found it there
            rows.append({"change": "(OVS alone: ovs-vsctl add-port, waits for vswitchd)",
                         "seconds": switch_alone[0], "runs": 1})
        rows.append({"change": name, "seconds": median(times), "max": max(times),
                     "flow_mods": max(mods), "runs": len(times)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--hypervisors", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, h = args.ports, args.hypervisors
    base = gen.config(n, h, rundir=f"/run/netvirt-bench/churn-{n}-{h}")
    with Bench(f"churn-{n}-{h}", base) as b:
        rows = measure(b, base, changes(base), args.repeat)
    baseline = rows[1]["seconds"]
    for r in rows[2:]:
        if not r["change"].startswith("("):
            r["minus_baseline"] = r["seconds"] - baseline
    print(table(rows, ["change", "seconds", "max", "minus_baseline", "flow_mods", "runs"]))
    print("(median and slowest seconds over runs; flow_mods = the most any run sent)")
    print(f"wrote {save('churn', rows, {'ports': n, 'hypervisors': h})}")


if __name__ == "__main__":
    main()
