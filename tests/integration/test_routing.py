"""The distributed router on real switches: blue and red both have networks 10.0.0.0/24 and
10.1.0.0/24 joined by a router named edge (conftest.base_config)."""
from __future__ import annotations

import re
import subprocess
import time

from .test_overlay import _flow_table


def _ping(env, vm: str, ip: str, *args: str) -> str:
    return env.run(vm, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", *args, ip).stdout


def test_ping_and_tcp_between_subnets_across_hypervisors_one_ttl_less(env):
    env.wait_in_sync()
    out = _ping(env, "blue/b1", "10.1.0.7")  # hv1 -> hv3, net -> db
    assert " 0% packet loss" in out, out
    assert set(re.findall(r"ttl=(\d+)", out)) == {"63"}, out  # b7's replies, routed once
    server = subprocess.Popen(env.lab.exec_argv("blue/b7", ["iperf3", "-s", "-1", "-p", "5201"]),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        client = env.run("blue/b2", "iperf3", "-c", "10.1.0.7", "-p", "5201", "-t", "2",
                         timeout=30)
        assert client.returncode == 0 and "receiver" in client.stdout, client.stdout
    finally:
        server.kill()
        server.wait()


def test_the_receiver_sees_one_ttl_less(env):
    sniff = subprocess.Popen(env.lab.exec_argv("blue/b7", [
        "tcpdump", "-l", "-n", "-v", "-c", "1", "-i", "eth0", "icmp and src 10.0.0.1"]),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    _ping(env, "blue/b1", "10.1.0.7", "-t", "17")
    out = sniff.communicate(timeout=10)[0]
    assert "ttl 16" in out, out


def test_traceroute_shows_the_router_as_the_one_hop(env):
    out = env.run("blue/b1", "traceroute", "-n", "-q", "1", "-w", "1", "10.1.0.7",
                  timeout=30).stdout
    hops = re.findall(r"^\s*(\d+)\s+(\S+)", out, re.M)
    assert [ip for _, ip in hops] == ["10.0.0.254", "10.1.0.7"], out


def test_the_router_answers_ping_to_its_addresses(env):
    for vm, ip in (("blue/b1", "10.0.0.254"), ("blue/b1", "10.1.0.254"),
                   ("red/r7", "10.1.0.254"), ("red/r7", "10.0.0.254")):
        out = _ping(env, vm, ip)
        assert " 0% packet loss" in out, (vm, ip, out)


def test_two_tenants_with_the_same_subnets_and_routers_stay_apart(env):
    # the same addresses in both tenants: each reaches its own, checked by the receiver
    from netvirt.host.reach import reaches
    ns = {vm: env.ns(vm) for vm in ("blue/b1", "blue/b7", "red/r1", "red/r7", "red/r4")}
    assert reaches(ns["blue/b1"], ns["blue/b7"], "10.1.0.7")
    assert reaches(ns["red/r1"], ns["red/r7"], "10.1.0.7")
    assert not reaches(ns["red/r1"], ns["blue/b7"], "10.1.0.7")
    assert not reaches(ns["blue/b7"], ns["red/r1"], "10.0.0.1")


def test_a_controller_restart_under_routed_traffic_loses_nothing_and_sends_nothing(env):
    env.wait_in_sync()
    assert " 0% packet loss" in _ping(env, "blue/b1", "10.1.0.7")  # tunnels resolved
    before = {hv: _flow_table(env, hv) for hv in ("hv1", "hv2", "hv3")}
    ping = subprocess.Popen(env.lab.exec_argv("blue/b1", ["ping", "-n", "-q", "-i", "0.01",
                                                          "-c", "400", "10.1.0.7"]),
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    env.ctl.stop()
    env.ctl.start()
    st = env.wait_in_sync(20)
    out = ping.communicate(timeout=30)[0]
    assert " 0% packet loss" in out, out
    assert all(h["flow_mods_sent"] == 0 and h["group_mods_sent"] == 0
               for h in st["hypervisors"].values()), st
    for hv, flows in before.items():
        now = _flow_table(env, hv)
        assert set(now) == set(flows), f"{hv}: flows changed across the restart"
        assert all(now[k] >= flows[k] for k in flows), f"{hv}: a flow was re-installed"
