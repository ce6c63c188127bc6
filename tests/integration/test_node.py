"""`netvirt node` runs in every lab hypervisor, reports its kernel through the
hypervisor's own OVSDB, and a restart with nothing changed writes nothing."""
from __future__ import annotations

import json
import subprocess

from netvirt import __version__


def _open_vswitch_row(env, hv: str) -> dict:
    """The Open_vSwitch row with its _version: the row's version changes with every write."""
    sock = env.lab.ovs(hv).db_sock
    query = json.dumps(["Open_vSwitch", {"op": "select", "table": "Open_vSwitch", "where": [],
                                         "columns": ["_version", "external_ids"]}])
    out = subprocess.run(["ovsdb-client", "transact", f"unix:{sock}", query], check=True,
                         capture_output=True, text=True).stdout
    row = json.loads(out)[0]["rows"][0]
    return {"version": row["_version"][1], "ids": dict(row["external_ids"][1])}


def test_every_hypervisor_runs_a_node_that_reports_its_kernel(env):
    st = env.wait_in_sync()
    for hv in ("hv1", "hv2", "hv3"):
        pid = env.lab.state["hypervisors"][hv]["node_pid"]
        assert env.lab.ovs(hv).is_ours(pid), f"{hv}: no node agent runs (pid {pid})"
        ids = _open_vswitch_row(env, hv)["ids"]
        assert ids["netvirt-node"] == __version__ and ids["netvirt-datapath-type"] in (
            "netdev", "system")
        assert set(ids["netvirt-kernel-qdiscs"].split(",")) >= {"htb", "tbf"}
        assert st["hypervisors"][hv]["node"] == __version__  # the controller read it there


def test_a_restarted_node_changes_nothing(env):
    before = _open_vswitch_row(env, "hv1")
    old = env.lab.state["hypervisors"]["hv1"]["node_pid"]
    env.lab.restart_node("hv1")
    new = env.lab.state["hypervisors"]["hv1"]["node_pid"]
    assert new != old and not env.lab.ovs("hv1").is_ours(old) and env.lab.ovs("hv1").is_ours(new)
    log = (env.lab.ovs("hv1").dir / "node.log").read_text()
    assert "node: pass 1: 0 change(s)" in log, log
    assert _open_vswitch_row(env, "hv1") == before, "the restart wrote to OVSDB"
