"""Pure control-plane work, no switch: load + validate a config of N ports and compile every
hypervisor's flows.  Baseline in the same run: yaml.safe_load of the same text (the floor any
YAML-based controller pays), as a ratio.  load is what the CLI does with the file (parse,
validate, allocate); controller_load is what the controller does with what the CLI sends
(the parsed document, validated again, from its JSON).

    python -m bench.compile [--sizes 1000 10000 50000] [--hypervisors 10] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import time

import yaml

from netvirt.testing import gen
from bench.harness import median, save, table
from netvirt.config import load_data, load_text
from netvirt.reconcile.compiler import compile_flows
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(n: int, h: int, repeat: int) -> dict:
    src = gen.text(gen.config(n, h))
    parse, load, ctl_load, comp = [], [], [], []
    flows = 0
    for _ in range(repeat):
        parse.append(timed(lambda: yaml.load(src, Loader=yaml.CSafeLoader))[0])
        t, lc = timed(lambda: load_text(src, "bench.yaml"))
        load.append(t)
        # the controller's load of what the CLI sends (netvirt/client.py: the parsed document
        # with its source) for a config that replaces this same one (a re-apply)
        body = json.dumps(lc.data)
        ctl_load.append(timed(lambda: load_data(json.loads(body), src, "bench.yaml",
                                                previous=lc))[0])
        topo = Topology(lc.config)
        invs = {hv: Inventory({r.port.interface: i + 1 for i, r in enumerate(topo.ports_on(hv))})
                for hv in topo.hypervisors}
        t, per_hv = timed(lambda: [compile_flows(topo, hv, invs[hv]) for hv in topo.hypervisors])
        comp.append(t)
        flows = sum(len(d.flows) for d in per_hv)
    return {"ports": n, "hypervisors": h, "yaml_parse_s": median(parse), "load_s": median(load),
            "controller_load_s": median(ctl_load), "compile_s": median(comp), "total_s": median(load) + median(comp),
            "load_vs_parse": median(load) / median(parse), "flows": flows,
            "flows_per_port": flows / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--hypervisors", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = [run(n, args.hypervisors, args.repeat) for n in args.sizes]
    print(table(rows, ["ports", "hypervisors", "yaml_parse_s", "load_s", "controller_load_s",
                       "compile_s", "total_s", "load_vs_parse", "flows", "flows_per_port"]))
    print(f"wrote {save('compile', rows)}")


if __name__ == "__main__":
    main()
