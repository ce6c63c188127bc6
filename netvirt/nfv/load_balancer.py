"""The load balancer: LB_CT, LB_PICK, LB_TO_MEMBER (and the hairpin's LB_HAIRPIN, LB_UNHAIRPIN)
on the client's hypervisor (ingress),
LB_REPLY on the hypervisor of the client a reply is delivered to (egress), all in the
tenant's conntrack zone.

A client's packet to the VIP (its protocol and port) goes through conntrack with nat: an
established connection's DNAT is redone there, so every packet of a connection goes to the
member its first packet was given, whatever the member set is now.  A new connection goes to
the load balancer's select group, whose buckets (one per member with a weight, weighted)
commit it DNATed to the member's address and target port; OVS picks the bucket by a hash of
the packet's 5-tuple.  A client on the VIP's network sent the packet to the VIP's MAC
(ARP_RESPONDER answers for the VIP where that network has ports), which LB_TO_MEMBER turns
into the member's, or the router's for a member on another network of the VIP's router; a
client on another network of the router sent it to the router, which routes the member's
address as any other.  A reply comes from the member's address and
target port: in egress, on the client's hypervisor, the same zone gives it the VIP's address
and port back.  The conntrack entry is on the client's hypervisor, so the DNAT and its
undoing meet there, as OVN's distributed load balancers do.

Anything else to the VIP (another port, another protocol, an invalid packet) drops; the VIP's
MAC floods nowhere.  Members whose health checks fail (controller/health.py) have no bucket;
with none left, a new connection goes to the controller, which refuses it with a TCP reset.
The checks' answers come back to the VIP's probe port and LB_CT sends them to the
controller.  A member that calls its own VIP: _hairpin below.

With source affinity (algorithm: source_ip) a new connection asks LB_AFFINITY first: a
flow there, learned when the client's last connection was given its member, loads that
member's address into reg7, and LB_AFFINE's flow for the member DNATs to it (and learns it
again).  With no such flow (a first call, a lapsed one), or one naming a member that takes
no connections now (no LB_AFFINE flow for it), LB_AFFINE sends the connection to the group,
whose bucket names a member in reg7 and resubmits to LB_AFFINE.  The learned flows are the
client's hypervisor's, as its conntrack entries are; no controller round trip makes them.
"""
from __future__ import annotations

from ipaddress import IPv4Address

from netvirt.pipeline.actions import arp_reply
from netvirt.pipeline.layout import (ARP_REQUEST, CT_NEW, CT_TRK, ETH_ARP, ETH_IP, IPPROTO_TCP,
                                     PUNT_METER_ID, REG_AFFINE, VNI_MASK)
from netvirt.pipeline.records import (CT, NAT, ClearInPort, Flow, Goto, Group, GroupAction, Learn,
                                      Meter, MeterAction, Output, Resubmit, SetField, origin_id)
from netvirt.pipeline.stages import following
from netvirt.pipeline.tables import Table
from netvirt.topology.balancer import PROBE_PORT, LbMember, LbOnHv


def compile_balancer(lb: LbOnHv) -> tuple[list[Flow], list[Group], list[Meter]]:
    l4 = "tcp" if lb.protocol == "tcp" else "udp"
    to_vip = {"eth_type": ETH_IP, "ipv4_dst": lb.vip, "ip_proto": lb.ip_proto,
              f"{l4}_dst": lb.port}
    picked = [m for m in lb.members if m.weight > 0 and m.origin not in lb.down]
    # with source affinity a bucket only names its member (reg7) for LB_AFFINE, whose
    # member flow learns it: a learn in a flow, not in a group, so that OVS deletes what it
    # learned when that flow goes (delete_learned counts flows' actions only)
    buckets = tuple((SetField(REG_AFFINE, _as_int(m.ip)), Resubmit(Table.LB_AFFINE))
                    if lb.affinity else (_dnat(lb, m),) for m in picked)
    groups = [Group(buckets, lb.origin, "select", tuple(m.weight for m in picked))
              ] if picked else []
    # a new connection: to a member, or (none is up) to the controller, which answers it a
    # TCP reset: the VIP refuses, it does not swallow the connection
    new = [GroupAction(groups[0].group_id)] if groups else [MeterAction(PUNT_METER_ID),
                                                            Output("CONTROLLER")]
    affine = bool(lb.affinity and groups)
    flows = []
    for vni in lb.client_vnis:
        net = {"metadata": (vni, VNI_MASK)}
        flows += [
            Flow.make(Table.LB_CT, 100, {**net, **to_vip},
                      [CT(zone=lb.zone, nat=NAT(), table=Table.LB_PICK)], lb.origin),
            Flow.make(Table.LB_PICK, 100, {**net, **to_vip, "ct_state": (CT_NEW | CT_TRK,
                                                                        CT_NEW | CT_TRK)},
                      [Resubmit(Table.LB_AFFINITY), Goto(Table.LB_AFFINE)] if affine else new,
                      lb.origin),
            # a DNATed packet is a member's now and goes on (the miss); what is still to
            # the VIP and not new (invalid) drops, and so does the rest of the VIP's traffic
            Flow.make(Table.LB_PICK, 90, {**net, **to_vip}, [], lb.origin),
            Flow.make(Table.LB_PICK, 80, {**net, "eth_type": ETH_IP, "ipv4_dst": lb.vip}, [],
                      lb.origin),
        ]
        if affine:
            # the client's member (reg7: from a learned flow, or the group's bucket) while it
            # takes connections, learned (again) for the client's next; else the group
            flows += [Flow.make(Table.LB_AFFINE, 100,
                                {**net, **to_vip, REG_AFFINE: _as_int(m.ip)},
                                [_learn(lb, m, l4), _dnat(lb, m)], m.origin) for m in picked]
            flows.append(Flow.make(Table.LB_AFFINE, 90, {**net, **to_vip}, new, lb.origin))
        for m in lb.members:
            flows.append(Flow.make(
                Table.LB_REPLY, 100, {**net, "eth_type": ETH_IP, "ipv4_src": m.ip,
                                      "ip_proto": lb.ip_proto, f"{l4}_src": m.target_port},
                [CT(zone=lb.zone, nat=NAT(), table=following(Table.LB_REPLY))], m.origin))
    if lb.vip_vni in lb.client_vnis:
        on_vip_net = {"metadata": (lb.vip_vni, VNI_MASK), "eth_dst": lb.vip_mac}
        for m in lb.members:
            flows.append(Flow.make(Table.LB_TO_MEMBER, 100,
                                   {**on_vip_net, "eth_type": ETH_IP, "ipv4_dst": m.ip},
                                   [SetField("eth_dst", m.next_mac),
                                    Goto(following(Table.LB_TO_MEMBER))], m.origin))
        flows.append(Flow.make(Table.L2_LOOKUP, 100, on_vip_net, [], lb.origin))
    flows += _hairpin(lb, l4)
    if lb.answers_arp:
        flows.append(Flow.make(Table.ARP_RESPONDER, 100,
                               {"metadata": (lb.vip_vni, VNI_MASK), "eth_type": ETH_ARP,
                                "arp_op": ARP_REQUEST, "arp_tpa": lb.vip},
                               arp_reply(lb.vip_mac, lb.vip), lb.origin))
    if lb.checked:
        # the answers of the members here to health checks (sent from the VIP's probe port),
        # in each member's network, before the hairpin's catch of what a member sends the
        # VIP from its target port
        for vni in sorted({m.vni for m in lb.members if m.origin in lb.local}):
            flows.append(Flow.make(Table.LB_CT, 110, {
                "metadata": (vni, VNI_MASK), "eth_type": ETH_IP, "ip_proto": IPPROTO_TCP,
                "ipv4_dst": lb.vip, "tcp_dst": PROBE_PORT},
                [MeterAction(PUNT_METER_ID), Output("CONTROLLER")], lb.origin))
    return flows, groups, []


def _dnat(lb: LbOnHv, m: LbMember) -> CT:
    """A new connection given to ``m``: DNATed to it, committed in the tenant's zone."""
    return CT(commit=True, zone=lb.zone, table=Table.LB_TO_MEMBER,
              nat=NAT("dst", m.ip, None, m.target_port, None))


def _as_int(ip: str) -> int:
    return int(IPv4Address(ip))


def _learn(lb: LbOnHv, m: LbMember, l4: str) -> Learn:
    """A flow in LB_AFFINITY that names ``m`` for this client's next connections to the VIP
    (the client's address in its network; not its port), until the client opens none for
    the affinity timeout (an idle timeout, as OVN's commit_lb_aff learns).  Its cookie is
    the member's origin, with no digest (the switch made the flow): when the member's
    LB_AFFINE flow goes (down, drained, removed), OVS deletes the affinities to it at once."""
    return Learn(Table.LB_AFFINITY, 100, lb.affinity, origin_id(m.origin) << 32,
                 (("eth_type", 16, ETH_IP), ("ip_proto", 8, lb.ip_proto),
                  ("metadata", 24, None), ("ipv4_src", 32, None),
                  ("ipv4_dst", 32, _as_int(lb.vip)), (f"{l4}_dst", 16, lb.port)),
                 ((REG_AFFINE, 32, _as_int(m.ip)),))


def _hairpin(lb: LbOnHv, l4: str) -> list[Flow]:
    """A member here that calls its own VIP and is given itself: the packet would come back
    from its own address (which its kernel drops) to the port it came in by (which OpenFlow
    does not do).  SNATed to the VIP in the hairpin zone, it comes from the VIP, and leaves by
    its ingress port; the reply undoes the SNAT there, then the DNAT in the tenant's zone,
    and goes back the same way.  (OVN SNATs hairpinned connections to the VIP too.)  A
    member of several VIPs at one port is SNATed to the lowest of them whichever it called
    (m.hairpin_ip): the flows are the same for each, and the tenant's zone gives the reply
    the VIP it called."""
    flows = []
    for m in lb.members:
        if m.origin not in lb.local:
            continue
        net = {"metadata": (m.vni, VNI_MASK), "eth_type": ETH_IP, "ip_proto": lb.ip_proto}
        flows.append(Flow.make(
            Table.LB_HAIRPIN, 100, {**net, "ipv4_src": m.ip, "ipv4_dst": m.ip,
                                    f"{l4}_dst": m.target_port},
            [ClearInPort(), CT(commit=True, zone=lb.hairpin_zone, nat=NAT("src", m.hairpin_ip),
                               table=Table.ARP_RESPONDER)], m.origin))
        flows.append(Flow.make(
            Table.LB_CT, 100, {**net, "ipv4_src": m.ip, f"{l4}_src": m.target_port,
                               "ipv4_dst": m.hairpin_ip},
            [ClearInPort(), CT(zone=lb.hairpin_zone, nat=NAT(), table=Table.LB_UNHAIRPIN)],
            m.origin))
        flows.append(Flow.make(
            Table.LB_UNHAIRPIN, 100, {**net, "ipv4_src": m.ip, f"{l4}_src": m.target_port,
                                      "ipv4_dst": m.ip},
            [CT(zone=lb.zone, nat=NAT(), table=Table.LB_TO_MEMBER)], m.origin))
    return flows
