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
into the member's; a client on another network of the VIP's router sent it to the router,
which routes the member's address as any other.  A reply comes from the member's address and
target port: in egress, on the client's hypervisor, the same zone gives it the VIP's address
and port back.  The conntrack entry is on the client's hypervisor, so the DNAT and its
undoing meet there, as OVN's distributed load balancers do.

Anything else to the VIP (another port, another protocol, an invalid packet) drops; the VIP's
MAC floods nowhere.  Members whose health checks fail (controller/health.py) have no bucket;
with none left, a new connection goes to the controller, which refuses it with a TCP reset.
The checks' answers come back to the VIP's probe port and LB_CT sends them to the
controller.  A member that calls its own VIP: _hairpin below.
"""
from __future__ import annotations

from netvirt.pipeline.actions import arp_reply
from netvirt.pipeline.layout import (ARP_REQUEST, CT_NEW, CT_TRK, ETH_ARP, ETH_IP, IPPROTO_TCP,
                                     PUNT_METER_ID, VNI_MASK)
from netvirt.pipeline.records import (CT, NAT, ClearInPort, Flow, Goto, Group, GroupAction, Meter,
                                      MeterAction, Output, SetField)
from netvirt.pipeline.stages import following
from netvirt.pipeline.tables import Table
from netvirt.topology.balancer import PROBE_PORT, LbOnHv


def compile_balancer(lb: LbOnHv) -> tuple[list[Flow], list[Group], list[Meter]]:
    l4 = "tcp" if lb.protocol == "tcp" else "udp"
    to_vip = {"eth_type": ETH_IP, "ipv4_dst": lb.vip, "ip_proto": lb.ip_proto,
              f"{l4}_dst": lb.port}
    picked = [m for m in lb.members if m.weight > 0 and m.origin not in lb.down]
    groups = [Group(tuple((CT(commit=True, zone=lb.zone, table=Table.LB_TO_MEMBER,
                              nat=NAT("dst", m.ip, None, m.target_port, None)),)
                          for m in picked), lb.origin, "select", tuple(m.weight for m in picked))
              ] if picked else []
    # a new connection: to a member, or (none is up) to the controller, which answers it a
    # TCP reset: the VIP refuses, it does not swallow the connection
    new = [GroupAction(groups[0].group_id)] if groups else [MeterAction(PUNT_METER_ID),
                                                            Output("CONTROLLER")]
    flows = []
    for vni in lb.client_vnis:
        net = {"metadata": (vni, VNI_MASK)}
        flows += [
            Flow.make(Table.LB_CT, 100, {**net, **to_vip},
                      [CT(zone=lb.zone, nat=NAT(), table=Table.LB_PICK)], lb.origin),
            Flow.make(Table.LB_PICK, 100, {**net, **to_vip, "ct_state": (CT_NEW | CT_TRK,
                                                                        CT_NEW | CT_TRK)},
                      new, lb.origin),
            # a DNATed packet is a member's now and goes on (the miss); what is still to
            # the VIP and not new (invalid) drops, and so does the rest of the VIP's traffic
            Flow.make(Table.LB_PICK, 90, {**net, **to_vip}, [], lb.origin),
            Flow.make(Table.LB_PICK, 80, {**net, "eth_type": ETH_IP, "ipv4_dst": lb.vip}, [],
                      lb.origin),
        ]
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
                                   [SetField("eth_dst", m.mac),
                                    Goto(following(Table.LB_TO_MEMBER))], m.origin))
        flows.append(Flow.make(Table.L2_LOOKUP, 100, on_vip_net, [], lb.origin))
    flows += _hairpin(lb, l4)
    if lb.answers_arp:
        flows.append(Flow.make(Table.ARP_RESPONDER, 100,
                               {"metadata": (lb.vip_vni, VNI_MASK), "eth_type": ETH_ARP,
                                "arp_op": ARP_REQUEST, "arp_tpa": lb.vip},
                               arp_reply(lb.vip_mac, lb.vip), lb.origin))
    if lb.checked and lb.local and lb.vip_vni in lb.client_vnis:
        # the members' answers to health checks (sent from the VIP's probe port), before
        # the hairpin's catch of what a member sends the VIP from its target port
        flows.append(Flow.make(Table.LB_CT, 110, {
            "metadata": (lb.vip_vni, VNI_MASK), "eth_type": ETH_IP, "ip_proto": IPPROTO_TCP,
            "ipv4_dst": lb.vip, "tcp_dst": PROBE_PORT},
            [MeterAction(PUNT_METER_ID), Output("CONTROLLER")], lb.origin))
    return flows, groups, []


def _hairpin(lb: LbOnHv, l4: str) -> list[Flow]:
    """A member here that calls its own VIP and is given itself: the packet would come back
    from its own address (which its kernel drops) to the port it came in by (which OpenFlow
    does not do).  SNATed to the VIP in the hairpin zone, it comes from the VIP, and leaves by
    its ingress port; the reply undoes the SNAT there, then the DNAT in the tenant's zone,
    and goes back the same way.  (OVN SNATs hairpinned connections to the VIP too.)"""
    net = {"metadata": (lb.vip_vni, VNI_MASK), "eth_type": ETH_IP, "ip_proto": lb.ip_proto}
    flows = []
    for m in lb.members:
        if m.origin not in lb.local:
            continue
        flows.append(Flow.make(
            Table.LB_HAIRPIN, 100, {**net, "ipv4_src": m.ip, "ipv4_dst": m.ip,
                                    f"{l4}_dst": m.target_port},
            [ClearInPort(), CT(commit=True, zone=lb.hairpin_zone, nat=NAT("src", lb.vip),
                               table=Table.ARP_RESPONDER)], m.origin))
        flows.append(Flow.make(
            Table.LB_CT, 100, {**net, "ipv4_src": m.ip, f"{l4}_src": m.target_port,
                               "ipv4_dst": lb.vip},
            [ClearInPort(), CT(zone=lb.hairpin_zone, nat=NAT(), table=Table.LB_UNHAIRPIN)],
            m.origin))
        flows.append(Flow.make(
            Table.LB_UNHAIRPIN, 100, {**net, "ipv4_src": m.ip, f"{l4}_src": m.target_port,
                                      "ipv4_dst": m.ip},
            [CT(zone=lb.zone, nat=NAT(), table=Table.LB_TO_MEMBER)], m.origin))
    return flows
