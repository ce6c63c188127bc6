"""A router's way out: SNAT and floating IPs, on its gateway hypervisor.

East-west traffic is routed where it enters (nfv/router.py); north-south traffic needs one
place that holds the connection: the router's gateway hypervisor, one of its external
network's hypervisors, chosen by rendezvous hashing (topology.graph.gateway_hypervisor).
Floating IPs are served there too, not on the port's own hypervisor: that one may not be
attached to the external network at all, the outside world needs one place to ARP the
address at, and a connection's state must not depend on which way a packet takes.  (OVN's
distributed floating IPs need every chassis on the provider network; not taken.)

Conntrack is the router's own zone, so no two tenants share one, and translations are OVS's
ct(nat): a connection is tracked from its first packet, its replies are translated back by
the same zone, and a packet ct(nat) has changed is looked at again after recirculation
(OVS would otherwise match the next table on the old addresses).

compile_gateway(RouterOnHv), for a router with an external gateway:
- everywhere the router is: its default route leads to the way out: locally on the
  gateway hypervisor (L3_SNAT), else through the tunnel with the router's own key, which
  the gateway hypervisor's CLASSIFY takes only from the router's other hypervisors;
- on the gateway hypervisor: ARP for its address and its floating IPs answered on the
  external network, its MAC leading into L3_FROM_EXTERNAL (ICMP echo to its address
  answered; the rest through the zone: L3_DNAT), DNAT of new connections to a floating IP,
  SNAT of new connections out (the floating IP, else the router's address when snat is
  on), the next hop on the external network.

compile_external(ExternalOnHv): an external network on one of its hypervisors: its port
classified into it, ARP replies sent to the controller (which learns the MACs, kept in
the hypervisor's OVSDB), the learned MACs as L3_RESOLVE flows out of its port, and a next
hop not learned yet to the controller, which ARPs for it (the packet is lost, as a router
that has to ARP loses it).
"""
from __future__ import annotations

import ipaddress

from netvirt.pipeline.actions import arp_reply
from netvirt.pipeline.layout import (ARP_REPLY, ARP_REQUEST, CT_DNAT, CT_EST, CT_NEW, CT_REL,
                                     CT_SNAT, CT_TRK, ETH_ARP, ETH_IP, ICMP_ECHO_REPLY,
                                     ICMP_ECHO_REQUEST, IPPROTO_ICMP, PUNT_METER_ID, REG_NEXTHOP,
                                     REG_ROUTER, REG_SCRATCH, TUNNEL_OFPORT, VNI_MASK)
from netvirt.pipeline.records import (CT, NAT, DecTtl, Flow, Goto, MeterAction, Move, Output,
                                      SetField, WriteMetadata)
from netvirt.pipeline.tables import Table
from netvirt.topology.views import ExternalOnHv, RouterOnHv

T = Table


def _state(on: int, off: int = 0) -> tuple[int, int]:
    """A ct_state match: these bits set, those clear."""
    return (CT_TRK | on, CT_TRK | on | off)


def _ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def _prefix(cidr: str):
    net = ipaddress.IPv4Network(cidr)
    return (str(net.network_address), str(net.netmask))


def compile_gateway(r: RouterOnHv) -> tuple[list[Flow], list, list]:
    g = r.gateway
    if g is None:
        return [], [], []
    at_router = {"metadata": (r.vni, VNI_MASK), "eth_type": ETH_IP}
    if not g.here:  # the default route: through the tunnel, under the router's own key
        return [Flow.make(T.L3_ROUTE, 100, at_router,
                          [SetField("tunnel_id", r.vni), SetField("tun_ipv4_dst", g.gateway_underlay),
                           Output(TUNNEL_OFPORT)], g.origin)], [], []
    into_router = [WriteMetadata(r.vni, VNI_MASK), Goto(T.L3_SNAT)]
    flows = [Flow.make(T.L3_ROUTE, 100, at_router, [Goto(T.L3_SNAT)], g.origin)]
    flows += [Flow.make(T.CLASSIFY, 100, {"in_port": TUNNEL_OFPORT, "tunnel_id": r.vni,
                                          "tun_ipv4_src": peer}, into_router, g.origin)
              for peer in g.senders]
    on_ext = {"metadata": (g.ext_vni, VNI_MASK)}
    answered = [(g.ip, g.origin)] + [(fip, origin) for _, fip, origin in g.floating_ips]
    for ip, origin in answered:
        flows.append(Flow.make(T.ARP_RESPONDER, 100,
                               {**on_ext, "eth_type": ETH_ARP, "arp_op": ARP_REQUEST,
                                "arp_tpa": ip}, arp_reply(g.mac, ip), origin))
    flows.append(Flow.make(T.L2_LOOKUP, 100, {**on_ext, "eth_dst": g.mac},
                           [SetField(REG_ROUTER, r.vni), Goto(T.L3_FROM_EXTERNAL)], g.origin))
    flows += _from_outside(r.vni, g) + _to_outside(at_router, g)
    return flows, [], []


def _from_outside(vni: int, g) -> list[Flow]:
    mine = {REG_ROUTER: vni, "eth_type": ETH_IP}
    zone = g.zone
    route = [DecTtl(), WriteMetadata(vni, VNI_MASK), Goto(T.L3_ROUTE)]
    flows = [
        Flow.make(T.L3_FROM_EXTERNAL, 300, {**mine, "ip_proto": IPPROTO_ICMP,
                                            "icmpv4_type": ICMP_ECHO_REQUEST, "ipv4_dst": g.ip},
                  [Move("ipv4_src", REG_SCRATCH, 32), Move("ipv4_dst", "ipv4_src", 32),
                   Move(REG_SCRATCH, "ipv4_dst", 32), SetField("icmpv4_type", ICMP_ECHO_REPLY),
                   Move("eth_src", "eth_dst", 48), SetField("eth_src", g.mac),
                   Output("IN_PORT")], g.origin),
        Flow.make(T.L3_FROM_EXTERNAL, 10, mine, [CT(zone=zone, nat=NAT(), table=T.L3_DNAT)],
                  g.origin),
        # replies of connections from inside (SNAT undone by the zone), related ICMP, and
        # connections just DNATed to a floating IP's port
        Flow.make(T.L3_DNAT, 200, {**mine, "ct_state": _state(CT_EST)}, route, g.origin),
        Flow.make(T.L3_DNAT, 200, {**mine, "ct_state": _state(CT_REL)}, route, g.origin),
        Flow.make(T.L3_DNAT, 200, {**mine, "ct_state": _state(CT_NEW | CT_DNAT)}, route,
                  g.origin)]
    for fixed, fip, origin in g.floating_ips:
        flows.append(Flow.make(T.L3_DNAT, 100, {**mine, "ct_state": _state(CT_NEW, CT_DNAT),
                                                "ipv4_dst": fip},
                               [CT(commit=True, zone=zone, nat=NAT("dst", fixed),
                                   table=T.L3_DNAT)], origin))
    return flows


def _to_outside(at_router: dict, g) -> list[Flow]:
    zone = g.zone
    onward = [Goto(T.L3_TO_EXTERNAL)]
    flows = [Flow.make(T.L3_SNAT, 100, at_router,
                       [CT(zone=zone, nat=NAT(), table=T.L3_SNAT_COMMIT)], g.origin)]
    for state in (_state(CT_EST), _state(CT_REL), _state(CT_NEW | CT_SNAT)):
        flows.append(Flow.make(T.L3_SNAT_COMMIT, 200, {**at_router, "ct_state": state},
                               onward, g.origin))
    new = _state(CT_NEW, CT_SNAT)
    for fixed, fip, origin in g.floating_ips:
        flows.append(Flow.make(T.L3_SNAT_COMMIT, 100,
                               {**at_router, "ct_state": new, "ipv4_src": fixed},
                               [CT(commit=True, zone=zone, nat=NAT("src", fip),
                                   table=T.L3_SNAT_COMMIT)], origin))
    if g.snat:
        for cidr in g.inside:
            flows.append(Flow.make(T.L3_SNAT_COMMIT, 50,
                                   {**at_router, "ct_state": new, "ipv4_src": _prefix(cidr)},
                                   [CT(commit=True, zone=zone, nat=NAT("src", g.ip),
                                       table=T.L3_SNAT_COMMIT)], g.origin))
    out = [SetField("eth_src", g.mac), WriteMetadata(g.ext_vni, VNI_MASK), Goto(T.L3_RESOLVE)]
    flows.append(Flow.make(T.L3_TO_EXTERNAL, 100, {**at_router, "ipv4_dst": _prefix(g.cidr)},
                           [Move("ipv4_dst", REG_NEXTHOP, 32), *out], g.origin))
    flows.append(Flow.make(T.L3_TO_EXTERNAL, 10, at_router,
                           [SetField(REG_NEXTHOP, _ip_int(g.next_hop)), *out], g.origin))
    return flows


def compile_external(e: ExternalOnHv) -> tuple[list[Flow], list, list]:
    if e.ofport is None:
        return [], [], []
    on_ext = {"metadata": (e.vni, VNI_MASK)}
    punt = [MeterAction(PUNT_METER_ID), Output("CONTROLLER")]
    flows = [Flow.make(T.CLASSIFY, 100, {"in_port": e.ofport},
                       [WriteMetadata(e.vni, VNI_MASK), Goto(T.ARP_RESPONDER)], e.origin),
             # the answers to what the controller asked, and anyone's: learned there
             Flow.make(T.ARP_RESPONDER, 100, {**on_ext, "eth_type": ETH_ARP,
                                              "arp_op": ARP_REPLY}, punt, e.origin),
             Flow.make(T.L3_RESOLVE, 1, on_ext, punt, e.origin)]  # not learned yet: ask
    for ip, mac in e.neighbours:
        flows.append(Flow.make(T.L3_RESOLVE, 100, {**on_ext, REG_NEXTHOP: _ip_int(ip)},
                               [SetField("eth_dst", mac), Output(e.ofport)], e.origin))
    return flows, [], []
