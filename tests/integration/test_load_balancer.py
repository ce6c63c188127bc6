"""The load balancer on real switches: a tenant "gold" added to the session's lab, three
HTTP members on three hypervisors behind a VIP (weights 1:1:2) and behind a second VIP with
source affinity, a client on the VIP's network and one behind the tenant's router, real
connections through the VIPs."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netvirt.cli import main
from netvirt.config import load_file

from .test_overlay import _flow_table

PROBE = str(Path(__file__).with_name("lb_probe.py"))
VIP = "10.6.0.100"
MEMBERS = {"m1": ("hv1", "10.6.0.1", 1), "m2": ("hv2", "10.6.0.2", 1), "m3": ("hv3", "10.6.0.3", 2)}
CLIENTS = {"c1": ("hv1", "10.6.0.10", "lan"), "c2": ("hv2", "10.7.0.10", "office")}
CHECK = {"type": "tcp", "interval": 0.5, "timeout": 0.3, "rise": 2, "fall": 2}


STICKY = "10.6.0.102"  # the same members with source affinity


def _gold(d: dict, check: dict = CHECK, sticky: bool = True) -> None:
    def net(name, cidr):
        return {"name": name, "subnets": [{"cidr": f"{cidr}.0/24", "gateway": f"{cidr}.254"}]}

    ports = [{"name": n, "network": "lan", "hypervisor": hv, "ips": [ip],
              "mac": f"02:00:00:00:0f:{i:02x}"} for i, (n, (hv, ip, _)) in enumerate(MEMBERS.items(), 1)]
    ports += [{"name": n, "network": net_, "hypervisor": hv, "ips": [ip],
               "mac": f"02:00:00:00:0f:{i:02x}"}
              for i, (n, (hv, ip, net_)) in enumerate(CLIENTS.items(), 10)]
    d["tenants"].append({
        "name": "gold", "networks": [net("lan", "10.6.0"), net("office", "10.7.0")],
        "ports": ports,
        "routers": [{"name": "edge", "interfaces": [{"network": "lan"}, {"network": "office"}]}],
        "load_balancers": [{"name": "www", "network": "lan",
                            "vip": {"ip": VIP, "protocol": "tcp", "port": 80},
                            "members": [{"port": n, "target_port": 8080, "weight": w}
                                        for n, (_, _, w) in MEMBERS.items()],
                            "health_check": check}]})
    if sticky:
        lbs = d["tenants"][-1]["load_balancers"]
        lbs.append({**copy.deepcopy(lbs[0]), "name": "sticky", "vip": {"ip": STICKY, "protocol": "tcp",
                                                        "port": 80},
                    "algorithm": "source_ip", "affinity_timeout": 600})


@pytest.fixture(scope="module")
def gold(env):
    api = env.client.base.removeprefix("http://")
    data = copy.deepcopy(env.data)
    _gold(data)
    f = env.write(data, "gold.yaml")
    env.lab.up(load_file(f))
    assert main(["apply", str(f), "--api", api]) == 0
    env.wait_in_sync(20, revision=env.client.status()["revision"])
    env.ctl.cfg = f  # a restart here starts with gold's config
    env.lb_servers = {}
    try:
        for name in MEMBERS:
            _serve(env, name)
        _wait_health(env, {m: "up" for m in MEMBERS})
        yield env
    finally:
        for p in env.lb_servers.values():
            p.kill()
            p.wait()
        env.ctl.cfg = env.base_file
        env.lab.up(load_file(env.base_file))
        assert main(["apply", str(env.base_file), "--api", api]) == 0
        env.wait_in_sync(20, revision=env.client.status()["revision"])


def _serve(env, name: str) -> None:
    p = subprocess.Popen(env.lab.exec_argv(f"gold/{name}", [
        sys.executable, PROBE, "serve", name, MEMBERS[name][1], "8080"]),
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    env.lb_servers[name] = p
    assert p.stdout.readline().strip() == "READY", name


def _health(env, lb: str = "www") -> dict:
    gold = next(t for t in env.client.topology()["tenants"] if t["name"] == "gold")
    (view,) = [v for v in gold["load_balancers"] if v["name"] == lb]
    return {m["port"]: m["health"] for m in view["members"]}


def _wait_health(env, want: dict, timeout: float = 10.0, lb: str = "www") -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _health(env, lb) == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"health {_health(env, lb)}, not {want} after {timeout}s")


def _fetch(env, client: str, n: int, pause: float = 0.0, vip: str = VIP) -> dict:
    r = env.run(f"gold/{client}", sys.executable, PROBE, "fetch", f"http://{vip}/", str(n),
                str(pause), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _apply(env, data: dict, name: str) -> None:
    """Write ``data`` as ``name``, apply it and wait until every switch has it."""
    f = env.write(data, name)
    assert main(["apply", str(f), "--api", env.client.base.removeprefix("http://")]) == 0
    env.wait_in_sync(20, revision=env.client.status()["revision"])


def _apply_gold(env, name: str, **kw) -> dict:
    """Apply the session's config with gold (``kw``: _gold's), and return it."""
    data = copy.deepcopy(env.data)
    _gold(data, **kw)
    _apply(env, data, name)
    return data


def test_300_requests_spread_over_the_members_by_their_weights(gold):
    counts = _fetch(gold, "c1", 300)
    assert sum(counts.get(m, 0) for m in MEMBERS) == 300, counts  # none failed
    total = sum(w for _, _, w in MEMBERS.values())
    for m, (_, _, w) in MEMBERS.items():
        share = counts.get(m, 0) / 300
        # the select group hashes each connection's 5-tuple: a binomial spread, so the
        # bound is 15 points of share, not 15% of it (which fails one run in ten)
        assert abs(share - w / total) <= 0.15, counts


def test_a_client_behind_the_router_is_balanced_too(gold):
    counts = _fetch(gold, "c2", 40)
    assert sum(counts.get(m, 0) for m in MEMBERS) == 40, counts
    assert len([m for m in MEMBERS if counts.get(m)]) >= 2, counts


def test_a_member_calling_its_own_vip_is_answered_also_by_itself(gold):
    counts = _fetch(gold, "m3", 40)  # m3 has half the weight: it gets itself often
    assert sum(counts.get(m, 0) for m in MEMBERS) == 40, counts  # none failed
    assert counts.get("m3", 0) > 0, counts  # the hairpin: SNATed to the VIP and back


def test_the_vip_is_nobody_elses_and_takes_only_its_port(gold):
    r = gold.run("gold/c1", sys.executable, "-c", (
        "import socket\n"
        "try:\n socket.create_connection(('10.6.0.100', 22), timeout=1); print('open')\n"
        "except OSError as e: print('closed', e)"))
    assert r.stdout.startswith("closed"), r.stdout
    # red has 10.0.0.0/24 too and no load balancer: gold's VIP address means nothing there
    assert not gold.ping("red/r1", VIP, count=1)


def test_a_dead_member_leaves_within_the_window_and_comes_back_when_it_answers(gold):
    gold.lb_servers.pop("m1").kill()  # its port refuses now: checks get a reset
    took = _wait_health(gold, {"m1": "down", "m2": "up", "m3": "up"})
    assert took <= CHECK["interval"] * CHECK["fall"] + CHECK["timeout"] + 0.5, took
    time.sleep(0.3)  # the agents' recompile: every hypervisor's group without m1
    counts = _fetch(gold, "c1", 60)
    assert counts.get("m1", 0) == 0 and sum(counts.get(m, 0) for m in MEMBERS) == 60, counts
    _serve(gold, "m1")
    _wait_health(gold, {m: "up" for m in MEMBERS})
    time.sleep(0.3)
    counts = _fetch(gold, "c1", 60)
    assert counts.get("m1", 0) > 0 and sum(counts.get(m, 0) for m in MEMBERS) == 60, counts


def test_with_every_member_down_the_vip_refuses_at_once(gold):
    for name in list(gold.lb_servers):
        gold.lb_servers.pop(name).kill()
    _wait_health(gold, {m: "down" for m in MEMBERS})
    time.sleep(0.3)
    t0 = time.monotonic()
    r = gold.run("gold/c1", sys.executable, "-c", (
        "import socket\n"
        "try:\n socket.create_connection(('10.6.0.100', 80), timeout=3); print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError as e: print('other', e)"))
    assert r.stdout.strip() == "refused" and time.monotonic() - t0 < 2, r.stdout
    for name in MEMBERS:
        _serve(gold, name)
    _wait_health(gold, {m: "up" for m in MEMBERS})


def test_an_http_check_takes_out_a_member_that_accepts_but_answers_503(gold):
    """m2 still accepts connections (a tcp check would pass it) but its /health says 503:
    the http check marks it down, and up again when it answers 200."""
    try:
        _apply_gold(gold, "http-check.yaml",
                    check={**CHECK, "type": "http", "path": "/health", "expect": [200]})
        _wait_health(gold, {m: "up" for m in MEMBERS})
        _say_to(gold.lb_servers["m2"], "sick")
        took = _wait_health(gold, {"m1": "up", "m2": "down", "m3": "up"})
        assert took <= CHECK["interval"] * CHECK["fall"] + CHECK["timeout"] + 0.5, took
        downs = gold.client.status()["load_balancer_members_down"]  # www's and sticky's
        assert {d["member"] for d in downs} == {"gold/www/m2", "gold/sticky/m2"}, downs
        assert all(d["last_check"] == "HTTP 503" for d in downs), downs
        time.sleep(0.3)  # the agents' recompile
        counts = _fetch(gold, "c1", 40)
        assert counts.get("m2", 0) == 0 and sum(counts.get(m, 0) for m in MEMBERS) == 40, \
            counts  # m2 still serves "/": only its health says no
        _say_to(gold.lb_servers["m2"], "well")
        _wait_health(gold, {m: "up" for m in MEMBERS})
    finally:
        _apply_gold(gold, "gold-tcp-again.yaml")


def _learned(env, hv: str) -> list[str]:
    """The affinities hv's switch learned (LB_AFFINITY above its miss), without counters."""
    lines = env.ofctl(hv, "dump-flows", "table=45", "--no-stats").splitlines()
    return sorted(ln.strip() for ln in lines if "priority=100" in ln)


def test_source_affinity_keeps_a_client_on_one_member_across_a_restart_and_a_death(gold):
    """sticky is www's members with source affinity: each client's 30 connections go to one
    member (www spreads them); a controller restart keeps what the switches learned (they
    are the switches' flows: none deleted, none sent); when the client's member dies it
    moves to one other and stays there; removing the load balancer removes what it learned."""
    c1 = _fetch(gold, "c1", 30, vip=STICKY)
    (first,) = c1
    assert first in MEMBERS and c1[first] == 30, c1
    c2 = _fetch(gold, "c2", 30, vip=STICKY)  # behind the router: learned on its hv2
    assert len(c2) == 1 and sum(c2.get(m, 0) for m in MEMBERS) == 30, c2
    (learned,) = _learned(gold, "hv1")  # c1's, keyed on its address and the VIP
    assert "nw_src=10.6.0.10" in learned and f"nw_dst={STICKY}" in learned, learned
    gold.ctl.stop()
    gold.ctl.start()
    st = gold.wait_in_sync(20)
    assert all(h["flow_mods_sent"] == 0 for h in st["hypervisors"].values()), st
    assert _learned(gold, "hv1") == [learned]
    assert _fetch(gold, "c1", 10, vip=STICKY) == {first: 10}
    try:
        gold.lb_servers.pop(first).kill()
        _wait_health(gold, {m: "down" if m == first else "up" for m in MEMBERS}, lb="sticky")
        time.sleep(0.3)  # the agents' recompile: the member's LB_AFFINE flow goes
        moved = _fetch(gold, "c1", 20, vip=STICKY)
        assert len(moved) == 1 and first not in moved and sum(
            moved.get(m, 0) for m in MEMBERS) == 20, moved
    finally:
        if first not in gold.lb_servers:
            _serve(gold, first)
        _wait_health(gold, {m: "up" for m in MEMBERS}, lb="sticky")
    _apply_gold(gold, "no-sticky.yaml", sticky=False)
    assert all(_learned(gold, hv) == [] for hv in ("hv1", "hv2", "hv3"))
    _apply_gold(gold, "sticky-again.yaml")


def test_a_member_on_another_network_of_the_router_serves_the_vip(gold):
    """c2 (office, hv2) behind a VIP on lan: clients on lan reach it through the router, and
    its health checks come back through its gateway."""
    data = copy.deepcopy(gold.data)
    _gold(data)
    data["tenants"][-1]["load_balancers"].append(
        {"name": "far", "network": "lan", "vip": {"ip": "10.6.0.103", "protocol": "tcp",
                                                  "port": 80},
         "members": [{"port": "c2", "target_port": 8080}], "health_check": dict(CHECK)})
    p = subprocess.Popen(gold.lab.exec_argv("gold/c2", [
        sys.executable, PROBE, "serve", "c2", CLIENTS["c2"][1], "8080"]),
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "READY"
        _apply(gold, data, "far.yaml")
        _wait_health(gold, {"c2": "up"}, lb="far")
        for client in ("c1", "m3"):  # lan, on hv1 and hv3
            assert _fetch(gold, client, 10, vip="10.6.0.103") == {"c2": 10}
    finally:
        p.kill()
        p.wait()
        _apply_gold(gold, "gold-without-far.yaml")


def _say_to(p: subprocess.Popen, line: str) -> None:
    p.stdin.write(line + "\n")
    p.stdin.flush()


FW_PROBE = str(Path(__file__).with_name("fw_probe.py"))


def test_changing_the_members_moves_no_established_connection(gold):
    """An echo VIP over m1 and m2: a session opened through it keeps echoing while the
    member set changes (weights, a member added): a moved connection would meet a member
    that does not know it, and be reset."""
    echo = []
    try:
        for name in ("m1", "m2", "m3"):
            p = subprocess.Popen(gold.lab.exec_argv(f"gold/{name}", [
                sys.executable, FW_PROBE, "serve", "tcp", MEMBERS[name][1], "7007"]),
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            echo.append(p)
            assert p.stdout.readline().strip() == "READY", name

        def apply(members: list[tuple[str, int]], name: str) -> None:
            data = copy.deepcopy(gold.data)
            _gold(data)
            data["tenants"][-1]["load_balancers"].append(
                {"name": "echo", "network": "lan",
                 "vip": {"ip": "10.6.0.101", "protocol": "tcp", "port": 7},
                 "members": [{"port": m, "target_port": 7007, "weight": w} for m, w in members]})
            _apply(gold, data, name)
        apply([("m1", 1), ("m2", 1)], "echo1.yaml")
        s = subprocess.Popen(gold.lab.exec_argv("gold/c1", [
            sys.executable, FW_PROBE, "session", "10.6.0.101", "7"]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert s.stdout.readline().strip() == "CONNECTED"
            assert _say(s, "one") == "one"
            apply([("m1", 3), ("m2", 1), ("m3", 5)], "echo2.yaml")
            assert _say(s, "two") == "two"
            apply([("m1", 1), ("m2", 2), ("m3", 1)], "echo3.yaml")
            assert _say(s, "three") == "three"
        finally:
            s.kill()
            s.wait()
    finally:
        for p in echo:
            p.kill()
            p.wait()
        _apply_gold(gold, "gold-again.yaml")


def _say(p: subprocess.Popen, word: str) -> str:
    _say_to(p, word)
    return p.stdout.readline().strip()


def test_a_controller_restart_during_requests_fails_none_and_sends_nothing(gold):
    # A member whose checks failed under load just now is out of the group, and a restarted
    # controller starts with every member in (it keeps no health state): that restart
    # would rightly change the group.  Start from all members in.
    for lb in ("www", "sticky"):
        _wait_health(gold, {m: "up" for m in MEMBERS}, lb=lb)
    before = {hv: _flow_table(gold, hv) for hv in ("hv1", "hv2", "hv3")}
    fetch = subprocess.Popen(gold.lab.exec_argv("gold/c1", [
        sys.executable, PROBE, "fetch", f"http://{VIP}/", "150", "0.02"]),
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    gold.ctl.stop()
    gold.ctl.start()
    st = gold.wait_in_sync(20)
    counts = json.loads(fetch.communicate(timeout=60)[0])
    assert sum(counts.get(m, 0) for m in MEMBERS) == 150, counts
    sent = {hv: (h["flow_mods_sent"], h["group_mods_sent"]) for hv, h in st["hypervisors"].items()}
    assert all(n == (0, 0) for n in sent.values()), (
        f"(flow mods, group mods) sent: {sent}; members: {_health(gold)}, "
        f"{_health(gold, 'sticky')}; flows changed: "
        f"{ {hv: set(_flow_table(gold, hv)) ^ set(f) for hv, f in before.items()} }")
    for hv, flows in before.items():
        assert set(_flow_table(gold, hv)) == set(flows), f"{hv}: flows changed across the restart"
