"""North-south on real switches: both tenants' routers go out to the external network
"internet" through hv3 (SNAT to 203.0.113.10 for blue, .11 for red), and blue/b2 has the
floating IP 203.0.113.20 (conftest.base_config).  The external network is the lab's
outside namespace: its bridge answers at the gateway, 203.0.113.1, and 198.51.100.1 is a
host beyond it."""
from __future__ import annotations

import subprocess
import sys
import time

from netvirt.cli import main
from netvirt.host.lab_external import OUTSIDE_HOST
from netvirt.host.reach import reaches
from netvirt.pipeline.records import origin_id

from .test_overlay import _flow_table

OUT = "external/internet"
SERVER = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
          "socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',{port})); s.listen(); print('READY',"
          "flush=True); c,a=s.accept(); print(a[0],flush=True)")
CLIENT = ("import socket,sys; s=socket.create_connection(('{ip}',{port}),timeout=5); "
          "s.close()")


def _peer_seen(env, server_vm: str, client_vm: str, ip: str, port: int) -> str:
    """The address a TCP server in ``server_vm`` sees a connection from ``client_vm`` come
    from."""
    server = subprocess.Popen(env.lab.exec_argv(server_vm, [
        sys.executable, "-c", SERVER.format(port=port)]), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "READY"
        for _ in range(3):  # the first packet out may be lost while the router ARPs
            if env.run(client_vm, sys.executable, "-c",
                       CLIENT.format(ip=ip, port=port)).returncode == 0:
                break
            time.sleep(0.5)
        return server.communicate(timeout=10)[0].strip()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _cookies(env, hv: str) -> set[int]:
    return {int(ln.split("cookie=")[1].split(",")[0], 16)
            for ln in env.ofctl(hv, "dump-flows").splitlines() if "cookie=" in ln}


def test_the_outside_sees_the_routers_address_for_ports_without_a_floating_ip(env):
    env.wait_in_sync()
    assert _peer_seen(env, OUT, "blue/b1", OUTSIDE_HOST, 7001) == "203.0.113.10"
    assert _peer_seen(env, OUT, "blue/b7", "203.0.113.1", 7002) == "203.0.113.10"
    # red's r1 has blue's b1's address; it leaves as red's router
    assert _peer_seen(env, OUT, "red/r1", OUTSIDE_HOST, 7003) == "203.0.113.11"


def test_a_floating_ip_is_its_ports_address_both_ways_and_only_its(env):
    assert _peer_seen(env, OUT, "blue/b2", OUTSIDE_HOST, 7004) == "203.0.113.20"
    assert _peer_seen(env, "blue/b2", OUT, "203.0.113.20", 7005) == "203.0.113.1"
    outside = env.ns(OUT)
    assert reaches(outside, env.ns("blue/b2"), "203.0.113.20")
    for vm in ("blue/b1", "red/r2", "red/r1"):  # r2 has b2's address: not reached
        assert not reaches(outside, env.ns(vm), "203.0.113.20"), vm
    assert not reaches(outside, env.ns("blue/b1"), "203.0.113.10")  # SNAT: nothing inbound


def test_the_outside_may_ping_the_routers_addresses(env):
    for ip in ("203.0.113.10", "203.0.113.11"):
        assert env.run(OUT, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", ip).returncode == 0


def test_removing_a_floating_ip_stops_it_and_changes_nothing_else(env):
    env.wait_in_sync()
    before = {hv: _flow_table(env, hv) for hv in ("hv1", "hv2", "hv3")}
    cookies_before = _cookies(env, "hv3")
    without = env.variant("no-fip.yaml", lambda d: d["tenants"][0].pop("floating_ips"))
    api = env.client.base.removeprefix("http://")
    try:
        assert main(["apply", str(without), "--api", api]) == 0
        after = {hv: _flow_table(env, hv) for hv in ("hv1", "hv2", "hv3")}
        assert set(after["hv1"]) == set(before["hv1"]) and \
            set(after["hv2"]) == set(before["hv2"])
        assert not set(after["hv3"]) - set(before["hv3"])  # only removals, on hv3
        gone = cookies_before - _cookies(env, "hv3")
        fip = origin_id("tenant/blue/floating_ip/203.0.113.20")
        assert gone and all(c >> 32 == fip for c in gone), [hex(c) for c in gone]
        assert not reaches(env.ns(OUT), env.ns("blue/b2"), "203.0.113.20")
        assert _peer_seen(env, OUT, "blue/b2", OUTSIDE_HOST, 7006) == "203.0.113.10"
    finally:
        assert main(["apply", str(env.base_file), "--api", api]) == 0
    env.wait_in_sync()
    assert reaches(env.ns(OUT), env.ns("blue/b2"), "203.0.113.20")
