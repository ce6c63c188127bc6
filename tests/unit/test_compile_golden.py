"""Golden dumps of the compiled pipeline: sorted, named tables, one flow per line, with the
origin of each flow.  Regenerate with NETVIRT_UPDATE_GOLDEN=1 after an intended change and
review the diff."""
import os
from pathlib import Path

import pytest

from netvirt.config import load_file
from netvirt.topology import Topology

from .helpers import compile_all

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


@pytest.mark.parametrize("hv", ["hv1", "hv2", "hv3"])
def test_demo_pipeline_matches_golden(hv):
    _, _, per_hv, _ = compile_all(load_file(ROOT / "examples" / "demo.yaml"))
    dump = per_hv[hv].dump()
    path = GOLDEN / f"demo-{hv}.txt"
    if os.environ.get("NETVIRT_UPDATE_GOLDEN"):
        path.write_text(dump)
    assert dump == path.read_text()


def test_every_flow_has_an_origin_that_leads_to_the_yaml():
    lc = load_file(ROOT / "examples" / "demo.yaml")
    _, _, per_hv, _ = compile_all(lc)
    for d in per_hv.values():
        for f in d.flows:
            assert f.cookie >> 32, f
            if f.origin != "pipeline":
                loc = lc.location(f.origin)
                assert loc is not None and loc.line > 1, f


def test_flows_are_deterministic_and_hashable():
    lc = load_file(ROOT / "examples" / "demo.yaml")
    a = compile_all(lc)[2]
    b = compile_all(load_file(ROOT / "examples" / "demo.yaml"))[2]
    assert a == b
    assert len({f for d in a.values() for f in d.flows}) > 0


def test_unbound_port_gets_no_local_flows_but_stays_reachable_from_remote():
    lc = load_file(ROOT / "examples" / "demo.yaml")
    topo = Topology(lc.config)
    from netvirt.reconcile.compiler import compile_flows
    from netvirt.topology.inventory import Inventory

    empty = compile_flows(topo, "hv1", Inventory())
    assert not [f for f in empty.flows if f.origin == "tenant/blue/port/web1"
                and f.table.name in ("CLASSIFY", "PORT_SECURITY")]
    remote = compile_flows(topo, "hv2", Inventory())
    assert [f for f in remote.flows if f.origin == "tenant/blue/port/web1"
            and f.table.name == "L2_LOOKUP"]
