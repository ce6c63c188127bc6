"""The packet-in path on real switches: DHCP answered by the controller, and a VM that
floods the controller held to its share while the API and other tenants carry on."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

PROBE = str(Path(__file__).with_name("dhcp_probe.py"))
B1_MAC = "02:00:00:00:0b:01"


def _probe(env, vm, *args, timeout=60):
    r = env.run(vm, sys.executable, PROBE, *args, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_port_of_a_dhcp_network_gets_its_configured_address(env):
    env.wait_in_sync()
    offer = _probe(env, "blue/b1", "discover", "eth0", B1_MAC)
    assert offer == {"yiaddr": "10.0.0.1", "xid": 0x4242, "router": "10.0.0.254", "mtu": 1450,
                     "type": 2, "server_mac": offer["server_mac"]}


def test_a_flood_to_the_controller_is_contained(env):
    env.wait_in_sync()
    flood = subprocess.Popen(env.lab.exec_argv("blue/b1", [sys.executable, PROBE, "flood", "eth0",
                                                           B1_MAC, "10"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ping = subprocess.Popen(env.lab.exec_argv("red/r1", ["ping", "-n", "-q", "-c", "50", "-i",
                                                         "0.2", "-W", "1", "10.0.0.2"]),
                            stdout=subprocess.PIPE, text=True)
    latencies = []
    try:
        time.sleep(1.0)  # the flood is under way
        while flood.poll() is None:
            t0 = time.monotonic()
            env.client.status()
            latencies.append(time.monotonic() - t0)
            time.sleep(0.1)
        out, err = flood.communicate(timeout=30)
        ping_out = ping.communicate(timeout=30)[0]
    finally:
        for p in (flood, ping):
            if p.poll() is None:
                p.kill()
                p.wait()
    result = json.loads(out.strip().splitlines()[-1])
    loss = re.search(r"(\d+)% packet loss", ping_out)
    meters = env.ofctl("hv1", "meter-stats")  # the punt meter's (meter 1) drop band
    dropped = int(re.search(r"^meter:1 .*\n\s*0: packet_count:(\d+)", meters, re.M)[1])
    punts = dict(re.findall(r'netvirt_packet_ins_total\{hypervisor="hv1",verdict="(\w+)"\} '
                            r'([\d.e+]+)', env.client.metrics()))
    assert result["sent"] > 2000, f"the flood was too thin to test anything: {result}"
    assert len(latencies) > 50 and max(latencies) < 0.1, \
        f"status took up to {max(latencies) * 1000:.0f} ms during the flood"
    assert loss and loss[1] == "0", f"the other tenant lost packets: {ping_out}"
    assert 0 < result["offers"] < result["sent"] / 5, result  # served, at its share only
    assert dropped > result["sent"] / 2, meters  # most of it never left the switch
    assert float(punts.get("limited_port", 0)) > 0 and float(punts["answered"]) > 0, punts
    metered = re.search(r'netvirt_punt_meter_dropped_packets_total\{hypervisor="hv1"\} ([\d.e+]+)',
                        env.client.metrics())
    assert metered and float(metered[1]) >= dropped, "the meter's drops are in /metrics"
