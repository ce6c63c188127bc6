"""A bridge on another hypervisor that claims hv1's datapath id and dials the controller
(issue 18, item 4): it must get no flow, hv1's own br-int stays managed, and status and the
log name the intruder.  The datapath id can be guessed; br-int's MAC, which netvirt keeps
in hv1's own OVSDB and the switch reports as its LOCAL port's, cannot."""
from __future__ import annotations

import time

from netvirt.overlay.ovsdb import datapath_id


def _refused(env) -> dict:
    return env.client.status()["hypervisors"]["hv1"]["refused"]


def test_a_bridge_claiming_hv1s_datapath_id_gets_no_flow_and_is_named(env):
    env.wait_in_sync()
    hv3 = env.lab.ovs("hv3")
    openflow = env.data["controller"]["openflow"]
    hv3.vsctl("add-br", "rogue", "--", "set", "bridge", "rogue", "datapath_type=netdev",
              "protocols=OpenFlow13", "fail-mode=secure",
              f"other_config:datapath-id={datapath_id('hv1'):016x}",
              "--", "set-controller", "rogue", openflow)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _refused(env):
            time.sleep(0.2)
        (host, refused), = _refused(env).items()  # one address: hv3's
        assert host == "172.30.9.4" and "not hv1's br-int's (0a:" in refused["why"], refused
        time.sleep(2)  # it dials again; it is refused again, and never gets a flow
        assert "cookie=" not in hv3.ofctl("dump-flows", "rogue")
        hv1 = env.wait_in_sync(10)["hypervisors"]["hv1"]
        assert hv1["switch_connected"] and hv1["switch_verified"] and hv1["healthy"], hv1
        assert env.ping("blue/b1", "10.0.0.2") and env.ping("red/r2", "10.0.0.1")
        log = (env.tmp / "controller.log").read_text()
        assert "claimed hv1's datapath id" in log and "refused" in log
    finally:
        hv3.vsctl("--if-exists", "del-br", "rogue")
    st = env.wait_in_sync(10)
    assert st["healthy"] and st["hypervisors"]["hv1"]["switch_verified"]
