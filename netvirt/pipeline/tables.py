"""The OpenFlow tables of br-int: one enum owns the table ids.

Ids leave gaps so that the stages later features add (firewall, load balancer, router, QoS
output) slot in without renumbering the tables that exist.  A table's name is for people
only: no cookie, group id or digest depends on it (see records.py).
"""
from __future__ import annotations

from enum import IntEnum


class Table(IntEnum):
    # ingress: where a packet enters br-int (from a VM port or a tunnel)
    CLASSIFY = 0  # tunnel key + source -> network; VM ports go on to PORT_SECURITY
    PORT_SECURITY = 10  # in_port + source MAC/IP/ARP -> network (anti-spoofing); else drop
    DHCP = 15  # a DHCP request -> the controller (metered); the rest goes on
    QOS_FROM_VM = 16  # a port's QoS on what its VM sends: its rate (a meter), DSCP mark
    QOS_SHARED_FROM_VM = 17  # the tenant's aggregate on this hypervisor: one shared meter
    # the firewall's judgement of what a firewalled VM port sends (its egress rules)
    ACL_FROM_VM_CT = 20  # IPv4 from a firewalled port -> conntrack in the port's zone
    ACL_FROM_VM = 21  # established and live, or a new connection a rule allows; else drop
    # load balancers, on the client's hypervisor, in the tenant's conntrack zone
    LB_CT = 40  # to a VIP -> conntrack, which redoes an established connection's DNAT
    LB_PICK = 41  # a new connection to a VIP -> the select group: DNAT to a member, committed
    LB_TO_MEMBER = 42  # sent to the VIP's MAC, now to a member's address -> the member's MAC
    LB_HAIRPIN = 43  # a member's connection to its own VIP, given to itself -> SNAT to the VIP
    LB_UNHAIRPIN = 44  # that connection's reply, its SNAT undone -> its DNAT undone
    # branches of LB_PICK for a VIP with source affinity (no stage's miss leads here)
    LB_AFFINITY = 45  # flows the switch learned: client -> the member it was given last
    LB_AFFINE = 46  # that member, if it still takes connections; else the select group
    ARP_RESPONDER = 50  # the hypervisor that hosts an address answers ARP for it
    L2_LOOKUP = 60  # dst MAC -> output register + egress, or a tunnel; floods -> FLOOD
    FLOOD = 62  # the network's flood group (one flow, whatever its ports)
    # a packet to a router's MAC: the router's own stages, then L2_LOOKUP of the next network
    L3_INPUT = 70  # TTL, ICMP echo to the router's addresses; the rest is routed
    L3_FROM_EXTERNAL = 71  # from the external network: echo to the router; conntrack
    L3_DNAT = 72  # replies go on; a new connection to a floating IP is DNATed to its port
    L3_ROUTE = 73  # longest prefix -> next hop, the interface to leave by, its network
    L3_SNAT = 74  # the way out, on the gateway hypervisor: through the router's conntrack
    L3_SNAT_COMMIT = 75  # a new connection SNATed: its floating IP, else the router's
    L3_TO_EXTERNAL = 76  # the next hop on the external network, the router's external MAC
    L3_RESOLVE = 78  # next hop -> its MAC (netvirt knows every port's), then L2_LOOKUP
    # egress: once per output port on this hypervisor, also for every copy of a flood
    LB_REPLY = 79  # from a member's address and port -> conntrack undoes the DNAT (VIP again)
    ACL_TO_VM_CT = 80  # IPv4 to a firewalled port -> conntrack in the port's zone
    ACL_TO_VM = 81  # as ACL_FROM_VM, with the port's ingress rules
    QOS_SHARED_TO_VM = 85  # the tenant's aggregate to its ports here: one shared meter
    OUTPUT = 90  # out of the port in the output register


def table_name(table_id: int) -> str:
    """A table's name, also for ids no enum member has (a flow someone else installed)."""
    try:
        return Table(table_id).name
    except ValueError:
        return f"table{table_id}"
