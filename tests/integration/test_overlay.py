"""Real traffic through real OVS, programmed by the real controller."""
from __future__ import annotations

import subprocess
import time

import pytest

from netvirt.cli import main
from netvirt.config import load_file
from netvirt.host.reach import matrix


def test_full_reachability_inside_tenants_and_none_across(env):
    m = matrix(env.lab, load_file(env.base_file).config)
    assert m.as_expected, {k: v for k, v in m.reached.items() if v != m.expected(*k)}
    # blue: 5 ports on two routed networks, 5 x 4; red: 4 x 3; nothing else
    assert sum(m.reached.values()) == 32


def test_tcp_across_hypervisors(env):
    server = subprocess.Popen(env.lab.exec_argv("blue/b3", ["iperf3", "-s", "-1", "-B", "10.0.0.3"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = env.run("blue/b1", "iperf3", "-c", "10.0.0.3", "-t", "1", "-J", timeout=20)
        assert r.returncode == 0, r.stdout[-500:]
        import json

        bps = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
        assert bps > 10e6, f"TCP across the overlay only reached {bps / 1e6:.1f} Mbit/s"
    finally:
        server.kill()
        server.wait()


def test_plan_lists_changes_and_changes_nothing(env, capsys):
    before = env.client.status()
    f = env.variant("plan.yaml", lambda d: d["tenants"][0]["ports"][0]["ips"].__setitem__(0, "10.0.0.9"))
    assert main(["plan", str(f), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "PORT_SECURITY" in out and "ARP_RESPONDER" in out and "nothing was applied" in out
    assert "+ PORT_SECURITY" in out and "ipv4_src=10.0.0.9" in out
    assert f"[tenant/blue/port/b1]  {f}:" in out  # each change cites its YAML line
    after = env.client.status()
    assert after["revision"] == before["revision"]
    assert env.ping("blue/b2", "10.0.0.1")


def test_rejected_config_changes_nothing(env, capsys):
    before = env.client.status()
    flows = env.ofctl("hv1", "dump-flows", "--no-stats")
    bad = env.variant("bad.yaml", lambda d: d["tenants"][0]["ports"][1]["ips"].__setitem__(0, "10.0.0.1"))
    assert main(["apply", str(bad)]) == 2
    assert "already used by port 'b1'" in capsys.readouterr().err
    assert env.client.status()["revision"] == before["revision"]
    assert env.ofctl("hv1", "dump-flows", "--no-stats") == flows


def test_added_port_becomes_reachable_and_removed_port_stops(env):
    def add_b4(d):
        d["tenants"][0]["ports"].append({"name": "b4", "network": "net", "hypervisor": "hv3",
                                         "ips": ["10.0.0.5"], "mac": "02:00:00:00:0b:04"})
    grown = env.variant("grown.yaml", add_b4)
    try:
        env.lab.up(load_file(grown))  # the "guest" appears on hv3
        assert not env.ping("blue/b1", "10.0.0.5", count=1)  # not in the controller's config yet
        assert main(["apply", str(grown)]) == 0
        assert env.ping("blue/b1", "10.0.0.5")
        assert not env.ping("red/r1", "10.0.0.5", count=1)
        assert main(["apply", str(env.base_file)]) == 0
        assert not env.ping("blue/b1", "10.0.0.5", count=1)
        assert env.ping("blue/b1", "10.0.0.3")
    finally:
        main(["apply", str(env.base_file)])
        env.lab.up(load_file(env.base_file))  # removes the b4 namespace
    assert "nvt-blue-b4" not in env.lab.state.get("vms")


def _flow_table(env, hv: str) -> dict[str, float]:
    """cookie -> duration, from the switch itself."""
    out = {}
    for line in env.ofctl(hv, "dump-flows").splitlines():
        fields = dict(p.split("=", 1) for p in line.strip().split(", ") if "=" in p)
        if "cookie" in fields:
            out[fields["cookie"] + fields.get("table", "") + line.split("priority=")[1].split(",")[0]
                ] = float(fields["duration"].rstrip("s"))
    return out


def test_controller_restart_loses_no_packet_and_sends_no_flow_mod(env):
    before = {hv: _flow_table(env, hv) for hv in ("hv1", "hv2", "hv3")}
    # warm the userspace datapath's tunnel neighbour caches (flushed when a test adds a port):
    # a loss there would have nothing to do with the restart
    assert env.ping("blue/b1", "10.0.0.3") and env.ping("blue/b3", "10.0.0.1")
    ping = subprocess.Popen(env.lab.exec_argv("blue/b1", ["ping", "-n", "-q", "-i", "0.01",
                                                          "-c", "400", "10.0.0.3"]),
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    env.ctl.stop()
    time.sleep(0.5)
    env.ctl.start()
    st = env.wait_in_sync(20)
    out, _ = ping.communicate(timeout=30)
    assert " 0% packet loss" in out, out
    assert all(h["flow_mods_sent"] == 0 and h["group_mods_sent"] == 0
               for h in st["hypervisors"].values()), st
    for hv, flows in before.items():
        now = _flow_table(env, hv)
        assert set(now) == set(flows), f"{hv}: flows changed across the restart"
        assert all(now[k] >= flows[k] for k in flows), f"{hv}: a flow was re-installed"


def test_flows_deleted_by_hand_are_repaired(env):
    desired = env.client.status()["hypervisors"]["hv2"]["desired_flows"]
    env.ofctl("hv2", "del-flows")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        n = len([ln for ln in env.ofctl("hv2", "dump-flows").splitlines() if "cookie=" in ln])
        if n == desired:
            break
        time.sleep(0.1)
    assert n == desired
    env.wait_in_sync(10)
    assert env.ping("blue/b1", "10.0.0.2") and env.ping("red/r2", "10.0.0.4")


def test_vswitchd_restart_is_repaired_and_status_follows_it(env, capsys):
    assert main(["status", "--api", env.client.base.removeprefix("http://")]) == 0
    env.lab.stop_vswitchd("hv3")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and env.client.status()["hypervisors"]["hv3"]["switch_connected"]:
        time.sleep(0.1)
    capsys.readouterr()
    assert main(["status", "--api", env.client.base.removeprefix("http://")]) == 1
    out = capsys.readouterr().out
    assert "hv3          FAIL switch=down" in out and "UNHEALTHY" in out, out
    env.lab.start_vswitchd("hv3")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not env.ping("blue/b1", "10.0.0.3", count=1):
        time.sleep(0.2)
    env.wait_in_sync(10)
    assert env.ping("blue/b2", "10.0.0.3") and env.ping("red/r1", "10.0.0.4")


def _flow_count(env, hv: str) -> int:
    return len([ln for ln in env.ofctl(hv, "dump-flows").splitlines() if "cookie=" in ln])


def test_flows_come_back_on_a_switch_whose_ovsdb_is_unreachable(env):
    """The controller reaches hv2's OVSDB through a remote of its own, which then goes away
    (as a management network would), while the switch reconnects with an empty table.
    (Stopping ovsdb-server itself is not this case: ovs-vswitchd stops serving OpenFlow
    while it has no database, so nobody could program that switch.)"""
    ovs = env.lab.ovs("hv2")
    sock = ovs.dir / "controller-db.sock"
    ovs.appctl("ovsdb-server", "ovsdb-server/add-remote", f"punix:{sock}")
    own_remote = env.variant("own-remote.yaml", lambda d: d["hypervisors"][1].update(
        ovsdb=f"unix:{sock}"))
    desired = env.wait_in_sync()["hypervisors"]["hv2"]["desired_flows"]
    env.ctl.stop()
    env.ctl.cfg = own_remote
    try:
        ovs.appctl("ovsdb-server", "ovsdb-server/remove-remote", f"punix:{sock}")
        env.ofctl("hv2", "del-flows")
        env.ctl.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _flow_count(env, "hv2") != desired:
            time.sleep(0.1)
        assert _flow_count(env, "hv2") == desired
        hv2 = env.wait_in_sync(10)["hypervisors"]["hv2"]
        assert not hv2["ovsdb_connected"] and "OVSDB" in hv2["ovsdb_error"] and not hv2["healthy"]
        assert env.ping("blue/b1", "10.0.0.2") and env.ping("red/r1", "10.0.0.2")
        ovs.appctl("ovsdb-server", "ovsdb-server/add-remote", f"punix:{sock}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and \
                not env.client.status()["hypervisors"]["hv2"]["ovsdb_connected"]:
            time.sleep(0.2)
        assert env.client.status()["hypervisors"]["hv2"]["ovsdb_connected"]
    finally:
        env.ctl.stop()
        env.ctl.cfg = env.base_file
        env.ctl.start()
        ovs.appctl("ovsdb-server", "ovsdb-server/remove-remote", f"punix:{sock}")
    env.wait_in_sync(20)


def test_a_stopped_ovsdb_server_shows_within_3_s_and_so_does_its_return(env, capsys):
    env.wait_in_sync()
    env.lab.stop_ovsdb("hv2")
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5 and \
                env.client.status()["hypervisors"]["hv2"]["ovsdb_connected"]:
            time.sleep(0.1)
        seen = time.monotonic() - t0
        assert seen < 3, f"status said ovsdb=up for {seen:.1f}s after ovsdb-server stopped"
        capsys.readouterr()
        assert main(["status", "--api", env.client.base.removeprefix("http://")]) == 1
        line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("hv2"))
        assert "FAIL" in line and "ovsdb=down" in line and "ovsdb error:" in line, line
    finally:
        env.lab.start_ovsdb("hv2")
    deadline = time.monotonic() + 30
    while not (hv2 := env.client.status()["hypervisors"]["hv2"])["healthy"] and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert hv2["healthy"], hv2
    assert env.ping("blue/b1", "10.0.0.2")


def test_lab_up_changes_a_running_guest_and_matrix_refuses_another_file(env, capsys):
    from netvirt.errors import UsageError

    moved = env.variant("b2-moved.yaml", lambda d: d["tenants"][0]["ports"][1].update(
        ips=["10.0.0.12"], mac="02:00:00:00:0b:12"))
    lc, base = load_file(moved), load_file(env.base_file)
    with pytest.raises(UsageError, match="the lab is up for .*base.yaml"):
        env.lab.check_built_from(lc)
    api = env.client.base.removeprefix("http://")
    try:
        env.lab.up(lc)
        out = env.run("blue/b2", "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert "10.0.0.12/24" in out and "10.0.0.2/" not in out, out
        assert "02:00:00:00:0b:12" in env.run("blue/b2", "ip", "-o", "link", "show",
                                             "eth0").stdout
        env.lab.check_built_from(lc)
        assert main(["apply", str(moved), "--api", api]) == 0
        assert env.ping("blue/b1", "10.0.0.12") and env.ping("blue/b3", "10.0.0.12")
    finally:
        env.lab.up(base)
        assert main(["apply", str(env.base_file), "--api", api]) == 0
    assert env.ping("blue/b1", "10.0.0.2")


def test_a_guest_device_made_again_under_its_name_carries_traffic_again(env):
    """The userspace ovs-vswitchd keeps reading the deleted device; the node agent sees the
    new one and adds the port again, so ovs-vswitchd opens it."""
    env.wait_in_sync()
    without = env.variant("no-r4.yaml", lambda d: d["tenants"][1]["ports"].pop(2))  # red/r4
    env.lab.up(load_file(without))  # the guest goes: its devices are deleted
    env.lab.up(load_file(env.base_file))  # and comes back: new devices, same names
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not env.ping("red/r1", "10.0.0.4", count=1):
        time.sleep(0.2)
    assert env.ping("red/r1", "10.0.0.4") and env.ping("red/r2", "10.0.0.4")
    node_log = (env.lab.ovs("hv3").dir / "node.log").read_text()
    assert "adding its port again" in node_log, node_log[-2000:]
    st = env.wait_in_sync(10)
    assert st["hypervisors"]["hv3"]["healthy"], st["hypervisors"]["hv3"]
