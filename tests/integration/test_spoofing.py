"""Nothing crosses tenants, and spoofed sources go nowhere (scapy frames, real switches).
Port security admits untagged IPv4 and ARP from a VM's own addresses, nothing else: not
with a VLAN tag (OVS matches eth_type inside one), not an ARP opcode other than request
or reply, not another ethertype."""
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


OWN_IP = {"eth_src": B1_MAC, "eth_dst": BCAST, "ip_src": "10.0.0.1", "ip_dst": "10.0.0.255"}
OWN_ARP = {"eth_src": B1_MAC, "eth_dst": BCAST, "arp_sha": B1_MAC, "arp_spa": "10.0.0.1",
           "arp_tpa": "10.0.0.1"}
BLUE = {"blue/b2", "blue/b3", "blue/b5"}
DOT1Q, DOT1AD = 0x8100, 0x88A8
FRAME_CASES = {
    # the frame an admitted one would be without its tag, broadcast: every blue VM (the
    # control: the frame itself is fine)
    "NVPROBE-untagged": (OWN_IP, BLUE),
    "NVPROBE-arp-reply": ({**OWN_ARP, "arp_op": 2}, BLUE),
    # one tag: a priority tag (VID 0) and VID 5; two tags: 802.1ad + 802.1Q, and Q-in-Q
    "NVPROBE-tag-vid0": ({**OWN_IP, "tags": [[DOT1Q, 0]]}, set()),
    "NVPROBE-tag-vid5": ({**OWN_IP, "tags": [[DOT1Q, 5]]}, set()),
    "NVPROBE-tag-arp": ({**OWN_ARP, "arp_op": 2, "tags": [[DOT1Q, 5]]}, set()),
    "NVPROBE-tags-ad-q": ({**OWN_IP, "tags": [[DOT1AD, 7], [DOT1Q, 5]]}, set()),
    "NVPROBE-tags-q-q": ({**OWN_IP, "tags": [[DOT1Q, 7], [DOT1Q, 5]]}, set()),
    **{f"NVPROBE-arp-op{op}": ({**OWN_ARP, "arp_op": op}, set())
       for op in (0, 3, 4, 5, 6, 7, 8, 9, 10, 25, 255)},
    **{f"NVPROBE-ethertype-{t:04x}": ({"eth_src": B1_MAC, "eth_dst": BCAST, "ethertype": t},
                                      set())
       for t in (0x86DD, 0x8035, 0x88CC, 0x8847, 0x8863, 0x88B5, 0x9000, 0x0842)},
}


def test_tagged_frames_other_arp_opcodes_and_other_ethertypes_reach_no_one(env):
    frames = [{**spec, "marker": m} for m, (spec, _) in FRAME_CASES.items()]
    seen = receivers(env, "blue/b1", frames, VMS, copies=3)
    wrong = {m: sorted(seen[m]) for m, (_, allowed) in FRAME_CASES.items()
             if seen[m] != allowed}
    assert not wrong, f"received by other VMs than they should be: {wrong}"
