"""The OpenFlow pipeline of br-int: one enum owns the table ids.

Ids leave gaps so that the stages later issues add (firewall, load balancer, router, QoS
output) slot in without renumbering the tables that exist; see docs/architecture.md.
"""
from __future__ import annotations

from enum import IntEnum


class Table(IntEnum):
    CLASSIFY = 0  # in_port / tunnel key -> network (metadata); unknown ports drop
    PORT_SECURITY = 10  # source MAC/IP/ARP must match the port (anti-spoofing)
    ARP_RESPONDER = 50  # answer ARP for known ports locally
    L2_LOOKUP = 60  # dst MAC -> local port or tunnel; broadcast/unknown -> flood group

    def next(self) -> "Table":
        later = [t for t in Table if t > self]
        if not later:
            raise ValueError(f"{self.name} is the last table")
        return min(later)


def table_name(table_id: int) -> str:
    """A table's name, also for ids no enum member has (a flow someone else installed)."""
    try:
        return Table(table_id).name
    except ValueError:
        return f"table{table_id}"


# metadata layout: the network's VNI in the low 24 bits, a "came from a tunnel" flag above.
VNI_MASK = 0xFFFFFF
FROM_TUNNEL = 1 << 32
NET_AND_ORIGIN_MASK = VNI_MASK | FROM_TUNNEL

# The single VXLAN port of br-int (remote_ip=flow, key=flow) is requested at this ofport,
# so tunnel flows compile without waiting to observe it.
TUNNEL_OFPORT = 4789
TUNNEL_PORT_NAME = "nv-vxlan"
