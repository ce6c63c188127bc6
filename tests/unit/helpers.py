"""Builders shared by the unit tests: configs from plain data, compiled networks."""
from __future__ import annotations

from pathlib import Path

import yaml

from netvirt.config import load_text
from netvirt.inspect.simulate import Network
from netvirt.reconcile.compiler import compile_flows
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

ROOT_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Flows each hypervisor of examples/demo.yaml gets (two VM ports each): the golden dumps
# (tests/golden/demo-hv*.txt) list them
DEMO_FLOWS = 57


class _NoAliases(yaml.SafeDumper):
    """Writes a value used twice out twice: the loader refuses YAML aliases."""

    def ignore_aliases(self, data):
        return True


def load_data(data: dict, name: str = "gen.yaml"):
    return load_text(yaml.dump(data, Dumper=_NoAliases, sort_keys=False), name)


def sequential_inventory(topo: Topology) -> dict[str, Inventory]:
    """ofports 1, 2, ... per hypervisor in (tenant, port) order, as a switch would assign."""
    return {hv: Inventory({r.port.interface: i + 1 for i, r in enumerate(topo.ports_on(hv))})
            for hv in topo.hypervisors}


def compile_all(loaded):
    topo = Topology(loaded.config)
    inv = sequential_inventory(topo)
    per_hv = {hv: compile_flows(topo, hv, inv[hv]) for hv in topo.hypervisors}
    net = Network.of_config(per_hv, loaded.config)
    return topo, inv, per_hv, net


def matches_golden(dump: str, name: str) -> bool:
    """``dump`` equals tests/golden/NAME.txt; NETVIRT_UPDATE_GOLDEN=1 writes it first (after
    an intended change: review the diff)."""
    import os

    path = ROOT_EXAMPLES.parent / "tests" / "golden" / f"{name}.txt"
    if os.environ.get("NETVIRT_UPDATE_GOLDEN"):
        path.write_text(dump)
    return dump == path.read_text()
