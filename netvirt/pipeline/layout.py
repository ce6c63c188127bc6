"""Where the pipeline keeps what it knows about a packet, and the fixed names and numbers
every stage, driver and the simulator agree on.

metadata: the network's VNI in bits 0-23; the other bits are free for later stages.  No bit
says "came from a tunnel": in_port says so, and OpenFlow never outputs a packet to its
ingress port unless told to (output:IN_PORT), which gives split horizon for free.

reg1: the output port chosen by L2_LOOKUP, read by the egress stages and by OUTPUT.  Like
OVN's reg15 (outport), it is set once per copy: a flood sets it in each bucket.
reg2: the next hop's IPv4 address (as an integer) from L3_ROUTE to L3_RESOLVE.
reg3: the router a packet entered, from L2_LOOKUP to L3_INPUT (metadata still says the
network it came from, which an ICMP error is about).
reg5: the conntrack zone of the firewalled port a packet is being judged for, from an ACL_*_CT
stage to the commit in the ACL stage after it (a rule's commit flow is shared by its ports).
reg6: which firewall stage judges the packet (FW_FROM_VM, FW_TO_VM in bits 0-1), so that the
stages' fixed flows (invalid, related, cut) apply only to packets a firewalled port's ct()
tracked (a routed packet arrives tracked by its router's zone), and the tenant's key in
bits 2-31, which the tenant's rule clauses match.
reg7: the member a source-affinity load balancer gave this client last (its IPv4 address as
an integer; 0: none, or it lapsed), loaded by a flow LB_AFFINITY learned, read by LB_AFFINE.
"""
from __future__ import annotations

VNI_MASK = 0xFFFFFF
REG_OUT = "reg1"  # the ofport a packet leaves by, set before the egress stages
REG_NEXTHOP = "reg2"  # the IPv4 address L3_ROUTE chose, which L3_RESOLVE turns into a MAC
REG_ROUTER = "reg3"  # the router whose MAC the packet was sent to (its VNI)
REG_SCRATCH = "reg4"  # a swap's temporary
REG_ZONE = "reg5"  # the firewalled port's conntrack zone (its low 16 bits)
REG_FW = "reg6"  # the tenant's key << 2 | FW_FROM_VM or FW_TO_VM: who judges the packet
REG_AFFINE = "reg7"  # the member a client's affinity names (its IPv4 address), or 0
FW_FROM_VM, FW_TO_VM, FW_STAGE_MASK = 1, 2, 0x3

# The single VXLAN port of br-int (remote_ip=flow, key=flow) is requested at this ofport,
# so tunnel flows compile without waiting to observe it.
TUNNEL_OFPORT = 4789
TUNNEL_PORT_NAME = "nv-vxlan"
INT_BRIDGE, PHY_BRIDGE = "br-int", "br-phy"
# Names a VM port's interface may not take: OVSDB would get two rows of one name.
RESERVED_INTERFACES = frozenset({TUNNEL_PORT_NAME, INT_BRIDGE, PHY_BRIDGE})

ETH_IP, ETH_ARP = 0x0800, 0x0806
# OpenFlow's vlan_vid of a frame that carries no 802.1Q tag (OFPVID_NONE).  OVS matches
# eth_type inside a tag, so a flow that admits IPv4 must also say "untagged", or a tagged
# frame with the VM's own MAC and IP passes and reaches other ports still tagged.
UNTAGGED = 0x0000
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
IP_PROTOCOLS = {"icmp": IPPROTO_ICMP, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}  # as YAML names them
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68

# Every packet a flow sends to the controller passes this meter first: a flooding VM
# cannot push more than PUNT_RATE packets per second per switch at the controller.
PUNT_METER_ID = 1
PUNT_RATE, PUNT_BURST = 200, 100  # packets per second, packets
# What the firewall denies goes to the controller's drop log through a meter of its own,
# so a VM that sends what it may not cannot take the punt meter's share from DHCP
FW_LOG_METER_ID = 2
FW_LOG_RATE, FW_LOG_BURST = 20, 20
ARP_REQUEST, ARP_REPLY = 1, 2

# Each VM port's flood limit (storm control) is its own meter: this base plus its ofport
# (ofports are below 0xff00), so the id needs no allocation and changes with the port only.
FLOOD_METER_BASE = 0x10000


def flood_meter_id(ofport: int) -> int:
    return FLOOD_METER_BASE + ofport


# A port's from_vm QoS rate: a meter of its own, numbered as its flood meter is.  A tenant's
# aggregate: two meters (from and to its VMs) per hypervisor, numbered by the tenant's place
# among the tenants that have one.  All below 0x40000: the userspace datapath's meter table
# holds 2^18.
QOS_METER_BASE, QOS_AGGREGATE_BASE = 0x20000, 0x30000


def qos_port_meter_id(ofport: int) -> int:
    return QOS_METER_BASE + ofport


def qos_aggregate_meter_id(index: int, direction: int) -> int:
    """``direction``: 0 from the VMs, 1 to them."""
    return QOS_AGGREGATE_BASE + 2 * index + direction

# ct_state bits, as OVS numbers them (match as (bits, mask))
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK, CT_SNAT, CT_DNAT = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
