"""The distributed router: its stages (L3_INPUT, L3_ROUTE, L3_RESOLVE) run on the hypervisor
where a packet enters, as OVN's distributed logical routers do, so traffic between a
tenant's subnets goes straight to the destination's hypervisor and never through a third.

Two compiles:
- compile_attachment(NetworkOnHv): what a network with a router interface needs on a
  hypervisor: ARP for the interface's address answered there (no ARP crosses a tunnel),
  the interface's MAC sending packets into the router (L2_LOOKUP -> L3_INPUT, the router
  in reg3), and each of its ports' addresses resolved to their MACs (L3_RESOLVE), so a
  routed packet is addressed to its port and L2_LOOKUP of that network sends it on;
- compile_router(RouterOnHv): the router's own flows: TTL (a packet that would expire
  goes to the controller, which answers time exceeded), ICMP echo to its addresses
  answered (the request is turned around and routed back to the asker), the TTL decremented
  once, routes (connected and static, longest prefix first) choosing the next hop, the
  interface's MAC as source and the next network's key.
"""
from __future__ import annotations

import ipaddress

from netvirt.pipeline.actions import arp_reply
from netvirt.pipeline.layout import (ARP_REQUEST, ETH_ARP, ETH_IP, ICMP_ECHO_REPLY,
                                     ICMP_ECHO_REQUEST, IPPROTO_ICMP, PUNT_METER_ID, REG_NEXTHOP,
                                     REG_ROUTER, REG_SCRATCH, VNI_MASK)
from netvirt.pipeline.records import (ClearInPort, DecTtl, Flow, Goto, MeterAction, Move, Output,
                                      Resubmit, SetField, WriteMetadata)
from netvirt.pipeline.tables import Table
from netvirt.topology.views import NetworkOnHv, RouterOnHv, network_views


def routed_views(topo, hv: str, inv) -> list[NetworkOnHv]:
    return [v for v in network_views(topo, hv, inv) if v.router is not None]


def _ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def compile_attachment(net: NetworkOnHv) -> tuple[list[Flow], list, list]:
    r = net.router
    in_net = {"metadata": (net.vni, VNI_MASK)}
    flows = []
    if net.local:  # guests here ask for their gateway and send to it
        flows.append(Flow.make(Table.ARP_RESPONDER, 100,
                               {**in_net, "eth_type": ETH_ARP, "arp_op": ARP_REQUEST,
                                "arp_tpa": r.ip}, arp_reply(r.mac, r.ip), r.origin))
        flows.append(Flow.make(Table.L2_LOOKUP, 100, {**in_net, "eth_dst": r.mac},
                               [SetField(REG_ROUTER, r.router_vni), Goto(Table.L3_INPUT)],
                               r.origin))
    for port in net.local + net.remote:
        for ip in port.ips:
            flows.append(Flow.make(Table.L3_RESOLVE, 100, {**in_net, REG_NEXTHOP: _ip_int(ip)},
                                   [SetField("eth_dst", port.mac), Resubmit(Table.L2_LOOKUP)],
                                   port.origin))
    return flows, [], []


def _into(vni: int) -> WriteMetadata:
    return WriteMetadata(vni, VNI_MASK)


def _prefix_priority(cidr: str, connected: bool) -> int:
    """Longest prefix first; a connected route before a static one of the same length."""
    return 100 + 2 * ipaddress.IPv4Network(cidr).prefixlen + (1 if connected else 0)


def _to(cidr: str) -> dict:
    """The match on a destination prefix (none at all for 0.0.0.0/0)."""
    net = ipaddress.IPv4Network(cidr)
    if net.prefixlen == 0:
        return {}
    if net.prefixlen == 32:
        return {"ipv4_dst": str(net.network_address)}
    return {"ipv4_dst": (str(net.network_address), str(net.netmask))}


def compile_router(r: RouterOnHv) -> tuple[list[Flow], list, list]:
    mine = {REG_ROUTER: r.vni, "eth_type": ETH_IP}
    flows = []
    for i in r.ifaces:
        flows.append(Flow.make(
            Table.L3_INPUT, 300, {**mine, "ip_proto": IPPROTO_ICMP,
                                  "icmpv4_type": ICMP_ECHO_REQUEST, "ipv4_dst": i.ip},
            # turned around into the reply, which is then routed back like any packet, out
            # of the port the request came in by
            [Move("ipv4_src", REG_SCRATCH, 32), Move("ipv4_dst", "ipv4_src", 32),
             Move(REG_SCRATCH, "ipv4_dst", 32), SetField("icmpv4_type", ICMP_ECHO_REPLY),
             ClearInPort(), _into(r.vni), Goto(Table.L3_ROUTE)], i.origin))
        flows.append(Flow.make(Table.L3_INPUT, 100, {**mine, "ipv4_dst": i.ip}, [], i.origin))
    for ttl in (0, 1):  # would expire here: ICMP time exceeded, from the controller
        flows.append(Flow.make(Table.L3_INPUT, 200, {**mine, "nw_ttl": ttl},
                               [MeterAction(PUNT_METER_ID), Output("CONTROLLER")], r.origin))
    flows.append(Flow.make(Table.L3_INPUT, 10, mine,
                           [DecTtl(), _into(r.vni), Goto(Table.L3_ROUTE)], r.origin))
    at_router = {"metadata": (r.vni, VNI_MASK), "eth_type": ETH_IP}
    for i in r.ifaces:
        for cidr in i.cidrs:
            flows.append(Flow.make(
                Table.L3_ROUTE, _prefix_priority(cidr, True), {**at_router, **_to(cidr)},
                [Move("ipv4_dst", REG_NEXTHOP, 32), SetField("eth_src", i.mac), _into(i.vni),
                 Goto(Table.L3_RESOLVE)], i.origin))
    for route in r.routes:
        flows.append(Flow.make(
            Table.L3_ROUTE, _prefix_priority(route.destination, False),
            {**at_router, **_to(route.destination)},
            [SetField(REG_NEXTHOP, _ip_int(route.next_hop)), SetField("eth_src", route.mac),
             _into(route.vni), Goto(Table.L3_RESOLVE)], route.origin))
    return flows, [], []
