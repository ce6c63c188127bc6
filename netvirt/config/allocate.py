"""Deterministic allocation of the values an operator may leave out: VNI, MAC, interface.

Each value is derived from a hash of the object's stable name, so the same config always
yields the same values on every machine and across restarts; a collision probes to the next
free value in a fixed (sorted) order.
"""
from __future__ import annotations

import hashlib

from netvirt.errors import UsageError

VNI_FIRST = 0x10000  # explicit VNIs below this never collide with allocated ones by design
VNI_SPAN = 0xFFFFFF - VNI_FIRST + 1


def digest(text: str, nbytes: int = 8) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=nbytes).digest(), "big")


def allocate_vni(key: str, taken: set[int]) -> int:
    h = digest("vni/" + key) % VNI_SPAN
    for i in range(VNI_SPAN):
        vni = VNI_FIRST + (h + i) % VNI_SPAN
        if vni not in taken:
            return vni
    raise UsageError("all 16M VNIs are taken; give networks explicit vni values")


def allocate_zone(key: str, taken: set[int]) -> int:
    """A conntrack zone (1-65535) for a router, stable as long as no other router's hash
    lands on it first."""
    h = digest("zone/" + key) % 0xFFFF
    for i in range(0xFFFF):
        zone = 1 + (h + i) % 0xFFFF
        if zone not in taken:
            return zone
    raise UsageError("all 65535 conntrack zones are taken; give routers explicit zones")


def router_mac(key: str) -> str:
    """A router interface's MAC: locally administered 06:..., so never a port's (02:...),
    the DHCP server's (0e:...) or a bridge's (0a:...)."""
    v = digest("router-mac/" + key, 5)
    return "06:" + ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(32, -1, -8))


def allocate_mac(key: str, taken: set[str]) -> str:
    h = digest("mac/" + key, 5)
    for i in range(1 << 20):
        v = (h + i) % (1 << 40)
        mac = "02:" + ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(32, -1, -8))
        if mac not in taken:
            return mac
    raise UsageError(f"no free MAC near {key}'s; give the port an explicit mac")


def interface_name(tenant: str, port: str) -> str:
    """Default name of a port's device on its hypervisor: 'tap' + 10 hex digits (13 chars)."""
    return f"tap{digest(f'{tenant}/{port}', 5):010x}"
