"""Action sequences more than one stage writes: shared here, in the vocabulary, so that the
overlay and the network functions (which import none of each other) say them the same way."""
from __future__ import annotations

from netvirt.pipeline.layout import ARP_REPLY
from netvirt.pipeline.records import Move, Output, SetField


def arp_reply(mac: str, ip: str) -> tuple:
    """Turn an ARP request for ``ip`` into the answer ``mac`` and send it back where it came
    from: the asking VM's port, or the tunnel to the asking hypervisor (same VNI; for a VM
    port tun_* is unused)."""
    return (Move("eth_src", "eth_dst", 48), SetField("eth_src", mac),
            SetField("arp_op", ARP_REPLY), Move("arp_sha", "arp_tha", 48),
            Move("arp_spa", "arp_tpa", 32), SetField("arp_sha", mac), SetField("arp_spa", ip),
            Move("tun_ipv4_src", "tun_ipv4_dst", 32), Output("IN_PORT"))
