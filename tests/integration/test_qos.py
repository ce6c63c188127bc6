"""QoS on real switches and a real kernel: a tenant "slow" added to the session's lab, iperf3
through its ports over VXLAN.  Rates from the VM are OpenFlow meters, rates to the VM are
htb on the hypervisor's side of the VM's device, put there by the node agent; this kernel
has no sch_netem, which status, topo and apply must say (the UML test checks netem)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import pytest

from netvirt.cli import main
from netvirt.config import load_file

PORTS = {"q1": ("hv1", "10.8.0.1"), "q2": ("hv2", "10.8.0.2"), "q3": ("hv2", "10.8.0.3")}
SECONDS = 3
MTU = 1450  # the network's (the default)


def _slow(d: dict, policies=(), attach=None, aggregate=None) -> None:
    """Add tenant "slow" to config ``d``: its ports, ``policies`` (YAML dicts), ``attach``
    (port -> policy name) and its aggregate policy's name."""
    ports = [{"name": n, "network": "lan", "hypervisor": hv, "ips": [ip],
              "mac": f"02:00:00:00:1a:{i:02x}",
              **({"qos_policy": attach[n]} if attach and n in attach else {})}
             for i, (n, (hv, ip)) in enumerate(PORTS.items(), 1)]
    d["tenants"].append({
        "name": "slow", "networks": [{"name": "lan", "subnets": [{"cidr": "10.8.0.0/24"}]}],
        "ports": ports, "qos_policies": list(policies),
        **({"aggregate_qos_policy": aggregate} if aggregate else {})})


def _apply(env, name: str, **kw) -> tuple[int, str]:
    data = copy.deepcopy(env.data)
    _slow(data, **kw)
    f = env.write(data, name)
    r = subprocess.run([*_cli(), "apply", str(f), "--api", env.client.base.removeprefix("http://")],
                       capture_output=True, text=True, timeout=60)
    env.wait_in_sync(20, revision=env.client.status()["revision"])
    return r.returncode, r.stderr


def _cli() -> list[str]:
    return [sys.executable, "-m", "netvirt.cli"]


@pytest.fixture(scope="module")
def slow(env):
    data = copy.deepcopy(env.data)
    _slow(data)
    f = env.write(data, "slow.yaml")
    env.lab.up(load_file(f))
    assert main(["apply", str(f), "--api", env.client.base.removeprefix("http://")]) == 0
    env.wait_in_sync(20, revision=env.client.status()["revision"])
    servers = {}
    for name, (_, ip) in PORTS.items():
        servers[name] = subprocess.Popen(env.lab.exec_argv(f"slow/{name}", [
            "iperf3", "-s", "-B", ip]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env.interfaces = {p.name: p.interface for t in load_file(f).config.tenants
                      if t.name == "slow" for p in t.ports}
    try:
        _wait_listening(env)
        env.line_rate = _mbps(env, "q1", "q2")
        yield env
    finally:
        for p in servers.values():
            p.kill()
            p.wait()
        env.lab.up(load_file(env.base_file))
        assert main(["apply", str(env.base_file), "--api",
                     env.client.base.removeprefix("http://")]) == 0
        env.wait_in_sync(20, revision=env.client.status()["revision"])


def _wait_listening(env) -> None:
    for name in PORTS:
        for _ in range(100):
            if ":5201 " in env.run(f"slow/{name}", "ss", "-ltn").stdout:
                break
            time.sleep(0.05)


def _mbps(env, client: str, server: str, *extra: str) -> float:
    """The rate on the wire of what iperf3 from ``client`` to ``server`` delivered after its
    first second, in Mbit/s (-R: server to client; -u: UDP, offered minus lost).  A policy's
    rate counts whole Ethernet frames, as htb and OpenFlow meters do; iperf3 counts payload,
    which at MTU 1450 is 4.5% (TCP) or 3% (UDP) less: the goodput is scaled back up by
    frame / payload."""
    for _ in range(3):  # a server still busy with the last test refuses one
        # --omit 1: a bucket's burst passes once, at the start; the rate is what holds after
        r = env.run(f"slow/{client}", "iperf3", "-c", PORTS[server][1], "-t", str(SECONDS),
                    "-O", "1", "-J", *extra, timeout=SECONDS + 30)
        out = json.loads(r.stdout or "{}")
        if "end" in out:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"iperf3 {client} -> {server} {extra}: {r.stdout[-500:]} {r.stderr}")
    return _wire(out)


def _wire(out: dict) -> float:
    end, start = out["end"], out["start"]
    if "sum_received" in end:  # TCP: Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12
        mss = MTU - 52
        return end["sum_received"]["bits_per_second"] * (mss + 66) / mss / 1e6
    s, size = end["sum"], start["test_start"]["blksize"]  # UDP: 14 + 20 + 8
    return s["bits_per_second"] * (100 - s["lost_percent"]) / 100 * (size + 42) / size / 1e6


def _policy(name: str, rate: str, **extra) -> dict:
    return {"name": name, "to_vm": {"rate": rate, **extra.get("to_vm", {})},
            "from_vm": {"rate": rate, **extra.get("from_vm", {})}}


def _tc(env, hv: str, iface: str) -> str:
    ns = env.lab.ovs(hv).netns
    return subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", iface],
                          capture_output=True, text=True, check=True).stdout


def _wait_tc(env, hv: str, iface: str, present: bool, timeout: float = 10.0) -> str:
    """Until the node agent has put netvirt's htb on the device (or taken it away)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _tc(env, hv, iface)
        if ("4e56:" in out) == present:
            return out
        time.sleep(0.1)
    raise AssertionError(f"{iface} on {hv}: {out}")


@pytest.mark.parametrize("rate", [10, 50])
def test_tcp_and_udp_hold_the_rate_in_each_direction(slow, rate):
    assert slow.line_rate > 1.5 * rate, f"the lab's line rate {slow.line_rate:.0f} Mbit/s"
    _apply(slow, f"rate{rate}.yaml", policies=[_policy("p", f"{rate}mbit")],
           attach={"q1": "p"})
    _wait_tc(slow, "hv1", slow.interfaces["q1"], True)
    got = {"tcp from the VM": _mbps(slow, "q1", "q2"),
           "tcp to the VM": _mbps(slow, "q1", "q2", "-R"),
           "udp from the VM": _mbps(slow, "q1", "q2", "-u", "-b", f"{2 * rate}M"),
           "udp to the VM": _mbps(slow, "q1", "q2", "-u", "-b", f"{2 * rate}M", "-R")}
    print(f"line rate {slow.line_rate:.1f} Mbit/s; policy {rate} Mbit/s: {got}")
    for what, mbps in got.items():
        assert abs(mbps - rate) <= 0.1 * rate, f"{what}: {mbps:.1f} Mbit/s, not {rate}: {got}"


def _at_once(env, pairs) -> list[float]:
    """UDP from each (client, server, port) at 20 Mbit/s offered, all at once; each one's
    rate on the wire.  UDP, so that what a meter lets through is what it measures: two TCP
    flows through one policer back off at its drops (one fell to 1 of 20 Mbit/s here)."""
    procs = [subprocess.Popen(env.lab.exec_argv(f"slow/{c}", [
        "iperf3", "-c", PORTS[s][1], "-p", port, "-u", "-b", "20M", "-t", str(SECONDS),
        "-O", "1", "-J"]), stdout=subprocess.PIPE, text=True) for c, s, port in pairs]
    return [_wire(json.loads(p.communicate(timeout=SECONDS + 30)[0])) for p in procs]


def test_an_aggregate_splits_its_rate_between_two_vms_on_a_hypervisor(slow):
    # from them: q2 and q3 (both on hv2) send to q1 at once, each to a server of its own
    _apply(slow, "aggregate.yaml", policies=[{"name": "shared", "from_vm": {"rate": "20mbit"}}],
           aggregate="shared")
    extra = subprocess.Popen(slow.lab.exec_argv("slow/q1", [
        "iperf3", "-s", "-B", PORTS["q1"][1], "-p", "5202"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        sent = _at_once(slow, [("q2", "q1", "5201"), ("q3", "q1", "5202")])
    finally:
        extra.kill()
        extra.wait()
    # to them: q1 (hv1) sends to both at once; hv2's one meter holds what they receive
    _apply(slow, "aggregate-to.yaml", policies=[{"name": "shared", "to_vm": {"rate": "20mbit"}}],
           aggregate="shared")
    received = _at_once(slow, [("q1", "q2", "5201"), ("q1", "q3", "5201")])
    # The sum holds.  How it splits is the traffic's: a meter polices, it does not share
    # out (seen here: 10.6/9.1, and 17.1/3.2 in another run), so the test asks only that
    # neither VM is shut out.  (docs/architecture.md, QoS: no fair share from a meter.)
    for rates in (sent, received):
        assert abs(sum(rates) - 20) <= 2, (sent, received)
        assert min(rates) >= 0.5, (sent, received)


def test_dscp_is_set_on_what_the_vm_sends(slow):
    _apply(slow, "dscp.yaml", policies=[{"name": "ef", "from_vm": {"dscp": 46}}],
           attach={"q1": "ef"})
    dump = subprocess.Popen(slow.lab.exec_argv("slow/q2", [
        "tcpdump", "-n", "-v", "-c", "2", "-i", "eth0", "icmp and src 10.8.0.1"]),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1)
    assert slow.ping("slow/q1", "10.8.0.2", count=3)
    out = dump.communicate(timeout=10)[0]
    assert out.count("tos 0xb8") == 2, out  # DSCP 46 (EF) << 2


def test_without_netem_the_rate_holds_and_latency_is_reported_not_enforced(slow):
    rc, err = _apply(slow, "latency.yaml", attach={"q1": "lag"}, policies=[
        {"name": "lag", "to_vm": {"rate": "10mbit", "latency": "50ms", "jitter": "10ms"}}])
    assert rc == 0, err
    assert "qos: slow/q1 on hv1: latency, jitter not enforced" in err, err
    assert "no sch_netem" in err, err
    _wait_tc(slow, "hv1", slow.interfaces["q1"], True)
    st = slow.client.status()
    (gap,) = [g for g in st["qos_not_enforced"] if g["port"] == "slow/q1"]
    assert gap["parts"] == ["latency", "jitter"] and "sch_netem" in gap["why"], gap
    r = subprocess.run([*_cli(), "topo", "--api", slow.client.base.removeprefix("http://")],
                       capture_output=True, text=True, timeout=30)
    assert "NOT ENFORCED: latency, jitter (this kernel has no sch_netem)" in r.stdout, r.stdout
    mbps = _mbps(slow, "q1", "q2", "-R")
    assert abs(mbps - 10) <= 1, mbps


def test_a_node_restart_changes_nothing_and_removal_restores_line_rate(slow):
    _apply(slow, "again.yaml", policies=[_policy("p", "10mbit")], attach={"q1": "p", "q2": "p"})
    for q in ("q1", "q2"):
        _wait_tc(slow, PORTS[q][0], slow.interfaces[q], True)
    before = _tc(slow, "hv1", slow.interfaces["q1"])
    slow.lab.restart_node("hv1")
    log = (slow.lab.ovs("hv1").dir / "node.log").read_text()
    assert "node: pass 1: 0 change(s)" in log, log
    assert _tc(slow, "hv1", slow.interfaces["q1"]) == before
    _apply(slow, "none.yaml")
    for q in ("q1", "q2"):
        out = _wait_tc(slow, PORTS[q][0], slow.interfaces[q], False)
        assert "4e57:" not in out, out
    meters = slow.ofctl("hv1", "dump-meters")
    ids = [int(w.split("=")[1]) for w in meters.split() if w.startswith("meter=")]
    assert not [i for i in ids if i >= 0x20000], meters  # the QoS meters are gone
    mbps = _mbps(slow, "q1", "q2")
    assert mbps >= 0.8 * slow.line_rate, (mbps, slow.line_rate)


def test_a_new_port_with_a_policy_keeps_its_htb_once_ovs_has_opened_it(slow):
    """A port that comes with its policy gets its htb and keeps it.  (ovs-vswitchd deletes a
    root qdisc it did not make when it first configures a port, which the demo's first
    apply once caught between the node's two requests; the node now shapes a port only
    after OVS opened it.  That window is too narrow for this test to hit on purpose: it
    checks the outcome.)"""
    data = copy.deepcopy(slow.data)
    _slow(data, policies=[_policy("p", "10mbit")], attach={"q4": "p"})
    data["tenants"][-1]["ports"].append({"name": "q4", "network": "lan", "hypervisor": "hv1",
                                         "ips": ["10.8.0.4"], "mac": "02:00:00:00:1a:04",
                                         "qos_policy": "p"})
    f = slow.write(data, "newport.yaml")
    slow.lab.up(load_file(f))
    assert main(["apply", str(f), "--api", slow.client.base.removeprefix("http://")]) == 0
    slow.wait_in_sync(20, revision=slow.client.status()["revision"])
    iface = next(p.interface for t in load_file(f).config.tenants if t.name == "slow"
                 for p in t.ports if p.name == "q4")
    _wait_tc(slow, "hv1", iface, True)
    time.sleep(2)  # OVS has configured the port by now: whatever it does to qdiscs, it did
    assert "4e56:" in _tc(slow, "hv1", iface)
