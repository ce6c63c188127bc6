"""The OpenFlow pipeline of br-int: one enum owns the table ids.

Ids leave gaps so that the stages later issues add (firewall, load balancer, router, QoS
output) slot in without renumbering the tables that exist; see docs/architecture.md.
"""
from __future__ import annotations

from enum import IntEnum


class Table(IntEnum):
    CLASSIFY = 0  # tunnel key + source -> network; VM ports go on to PORT_SECURITY
    PORT_SECURITY = 10  # in_port + source MAC/IP/ARP -> network (anti-spoofing); else drop
    ARP_RESPONDER = 50  # the hypervisor that hosts an address answers ARP for it
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


# metadata layout: the network's VNI in the low 24 bits; the other bits are left to later
# stages.  Whether a packet came from a tunnel needs no bit: in_port says so, and OpenFlow
# never outputs a packet to its ingress port unless told to (split horizon for free).
VNI_MASK = 0xFFFFFF

# The single VXLAN port of br-int (remote_ip=flow, key=flow) is requested at this ofport,
# so tunnel flows compile without waiting to observe it.
TUNNEL_OFPORT = 4789
TUNNEL_PORT_NAME = "nv-vxlan"
