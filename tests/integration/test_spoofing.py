"""Nothing crosses tenants, and spoofed sources go nowhere (scapy frames, real switches)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = str(Path(__file__).with_name("scapy_probe.py"))
VMS = ["blue/b2", "blue/b3", "red/r1", "red/r2", "red/r4"]
B1_MAC, B2_MAC, R2_MAC = "02:00:00:00:0b:01", "02:00:00:00:0b:02", "02:00:00:00:0c:02"
BCAST = "ff:ff:ff:ff:ff:ff"

CASES = {
    # marker: (frame from blue/b1, VMs allowed to receive it)
    "NVPROBE-legit": ({"eth_src": B1_MAC, "eth_dst": B2_MAC, "ip_src": "10.0.0.1",
                       "ip_dst": "10.0.0.2"}, {"blue/b2"}),
    "NVPROBE-spoof-mac": ({"eth_src": "02:00:00:00:0c:01", "eth_dst": BCAST,
                           "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2"}, set()),
    "NVPROBE-spoof-mac-unicast": ({"eth_src": "02:00:00:00:0c:01", "eth_dst": R2_MAC,
                                   "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2"}, set()),
    "NVPROBE-spoof-ip": ({"eth_src": B1_MAC, "eth_dst": B2_MAC, "ip_src": "10.0.0.4",
                          "ip_dst": "10.0.0.2"}, set()),
    "NVPROBE-spoof-arp": ({"eth_src": B1_MAC, "eth_dst": BCAST, "arp_op": 2,
                           "arp_sha": B1_MAC, "arp_spa": "10.0.0.2", "arp_tpa": "10.0.0.2"}, set()),
    # another tenant's MAC is unknown in blue's network: flooded to blue only, never to red
    "NVPROBE-cross-tenant-mac": ({"eth_src": B1_MAC, "eth_dst": R2_MAC, "ip_src": "10.0.0.1",
                                  "ip_dst": "10.0.0.2"}, {"blue/b2", "blue/b3"}),
    "NVPROBE-broadcast": ({"eth_src": B1_MAC, "eth_dst": BCAST, "ip_src": "10.0.0.1",
                           "ip_dst": "10.0.0.255"}, {"blue/b2", "blue/b3"}),
}


def test_spoofed_and_cross_tenant_frames_reach_nobody_they_should_not(env):
    sniffers = {vm: subprocess.Popen(env.lab.exec_argv(vm, [sys.executable, PROBE, "sniff", "eth0", "6"]),
                                     stdout=subprocess.PIPE, text=True) for vm in VMS}
    try:
        for p in sniffers.values():
            assert p.stdout.readline().strip() == "READY"
        frames = [{**spec, "marker": m} for m, (spec, _) in CASES.items()]
        for _ in range(3):  # three copies: a single lost frame must not pass for isolation
            env.run("blue/b1", sys.executable, PROBE, "send", "eth0", json.dumps(frames), check=True)
        seen = {vm: json.loads(p.communicate(timeout=20)[0].strip().splitlines()[-1])
                for vm, p in sniffers.items()}
    finally:
        for p in sniffers.values():
            p.kill()
            p.wait()
    for marker, (_, allowed) in CASES.items():
        got = {vm for vm, counts in seen.items() if counts.get(marker)}
        assert got == allowed, f"{marker}: received by {sorted(got)}, expected {sorted(allowed)}"
