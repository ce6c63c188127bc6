"""Storm control (issue 18, item 8): a VM that floods unknown unicast at full speed is
held to its network's flood_limit on its own hypervisor and, counted by a receiver there,
on another one; another tenant's traffic is not affected."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SECONDS = 5
RATE, BURST = 1000, 200  # the default flood_limit, which the test lab keeps


def _sniff(env, vm: str) -> subprocess.Popen:
    p = subprocess.Popen(env.lab.exec_argv(vm, [sys.executable, str(HERE / "scapy_probe.py"),
                                                "sniff", "eth0", str(SECONDS + 3)]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "READY", p.stderr.read()
    return p


def test_a_flooding_vm_is_held_to_its_flood_limit_everywhere(env):
    env.wait_in_sync()
    marker = "NVPROBE-storm"
    remote, local = _sniff(env, "blue/b2"), _sniff(env, "blue/b5")  # hv2, and b1's hv1
    ping = subprocess.Popen(env.lab.exec_argv("red/r1", ["ping", "-n", "-q", "-c", "20", "-i",
                                                         "0.2", "-W", "1", "10.0.0.2"]),
                            stdout=subprocess.PIPE, text=True)
    storm = env.run("blue/b1", sys.executable, str(HERE / "storm_probe.py"), "eth0",
                    "02:00:00:00:0b:01", "02:00:00:00:99:99", "10.0.0.1", marker,
                    str(SECONDS), timeout=SECONDS + 30)
    assert storm.returncode == 0, storm.stderr
    sent = json.loads(storm.stdout.strip().splitlines()[-1])["sent"]
    seen = {name: json.loads(p.communicate(timeout=30)[0].strip().splitlines()[-1]).get(marker, 0)
            for name, p in (("hv2", remote), ("hv1", local))}
    ping_out = ping.communicate(timeout=30)[0]
    most = RATE * SECONDS * 1.1 + BURST  # a token bucket's burst, and 10% for timing
    assert sent > 5 * most, f"the storm was too thin to test anything: {sent} frames"
    for hv, n in seen.items():
        assert RATE * SECONDS * 0.5 < n <= most, f"{hv} got {n} of {sent} flooded frames"
    assert re.search(r" 0% packet loss", ping_out), ping_out
    meters = env.ofctl("hv1", "meter-stats")
    # b1's meter, the one that saw the storm: what it let through is what was seen
    met, dropped = max((int(a), int(b)) for a, b in re.findall(
        r"packet_in_count:(\d+) .*\n\s*0: packet_count:(\d+)", meters))
    assert met - dropped <= most and dropped > met / 2, meters
