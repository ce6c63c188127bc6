"""Nothing crosses tenants, and spoofed sources go nowhere (scapy frames, real switches)."""
from __future__ import annotations

from .frames import receivers

VMS = ["blue/b2", "blue/b3", "blue/b5", "red/r1", "red/r2", "red/r4"]
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
                                  "ip_dst": "10.0.0.2"}, {"blue/b2", "blue/b3", "blue/b5"}),
    "NVPROBE-broadcast": ({"eth_src": B1_MAC, "eth_dst": BCAST, "ip_src": "10.0.0.1",
                           "ip_dst": "10.0.0.255"}, {"blue/b2", "blue/b3", "blue/b5"}),
}


def test_spoofed_and_cross_tenant_frames_reach_nobody_they_should_not(env):
    frames = [{**spec, "marker": m} for m, (spec, _) in CASES.items()]
    seen = receivers(env, "blue/b1", frames, VMS, copies=3)
    for marker, (_, allowed) in CASES.items():
        assert seen[marker] == allowed, \
            f"{marker}: received by {sorted(seen[marker])}, expected {sorted(allowed)}"
