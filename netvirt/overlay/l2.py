"""L2_LOOKUP: destination MAC -> a local port, or the network's VNI on the tunnel to the
hypervisor that hosts the port.  A local port is chosen by writing it to the output
register and going on to the egress stages, which end in OUTPUT; a remote port's egress runs
on its own hypervisor, after the tunnel.  Broadcast, multicast and unknown unicast go to the
network's flood group: one bucket per local port (output register + the egress stages, so a
to-VM rule applies to every flooded copy too) and one per other hypervisor that hosts the
network.  What a local VM floods passes its own meter first (the network's flood_limit,
storm control): a VM that floods ARP or unknown destinations is held to that rate on this
hypervisor and, since the copies to the other hypervisors are made after the meter, on
every other one too; its neighbours' own floods have meters of their own.

A packet that came from a tunnel is never sent back into it, and a flooded copy never back
to the VM it came from: OpenFlow drops an output to the ingress port.  That gives split
horizon for floods and no hairpinning between hypervisors, with one flood flow and one group
per network."""
from __future__ import annotations

from netvirt.pipeline.layout import REG_OUT, TUNNEL_OFPORT, VNI_MASK, flood_meter_id
from netvirt.pipeline.records import (Flow, Goto, Group, GroupAction, Meter, MeterAction, Output,
                                      Resubmit, SetField)
from netvirt.pipeline.stages import first_egress
from netvirt.pipeline.tables import Table
from netvirt.topology.views import NetworkOnHv

T = Table.L2_LOOKUP


def _to_tunnel(vni: int, remote_ip: str) -> tuple:
    return (SetField("tunnel_id", vni), SetField("tun_ipv4_dst", remote_ip), Output(TUNNEL_OFPORT))


def compile_l2(net: NetworkOnHv) -> tuple[list[Flow], list[Group], list[Meter]]:
    in_net = {"metadata": (net.vni, VNI_MASK)}
    egress = first_egress()
    flows = []
    bound = net.bound
    for port in bound:
        flows.append(Flow.make(T, 100, {**in_net, "eth_dst": port.mac},
                               [SetField(REG_OUT, port.ofport), Goto(egress)], port.origin))
    for port in net.remote:
        flows.append(Flow.make(T, 100, {**in_net, "eth_dst": port.mac},
                               _to_tunnel(net.vni, port.underlay_ip), port.origin))
    if not net.local:  # here only for its router: nothing floods into it from here
        return flows, [], []
    buckets = [(SetField(REG_OUT, ofport), Resubmit(egress))
               for ofport in sorted(p.ofport for p in bound)]
    buckets += [_to_tunnel(net.vni, peer) for peer in net.peers]
    if not buckets:
        return flows, [], []
    group = Group(tuple(buckets), net.origin)
    # the group in a table of its own: a port added changes the group and this one flow,
    # not every port's metered flood flow (which would name the group otherwise)
    flows.append(Flow.make(Table.FLOOD, 100, in_net, [GroupAction(group.group_id)],
                           net.origin))
    flood = Goto(Table.FLOOD)
    flows.append(Flow.make(T, 10, in_net, [flood], net.origin))  # from the tunnel
    meters = []
    if net.flood_limit is not None:
        rate, burst = net.flood_limit
        for port in bound:
            meter = Meter(flood_meter_id(port.ofport), rate, burst, "pktps", port.origin)
            meters.append(meter)
            flows.append(Flow.make(T, 20, {**in_net, "in_port": port.ofport},
                                   [MeterAction(meter.meter_id), flood], port.origin))
    return flows, [group], meters
