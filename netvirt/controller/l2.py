"""L2_LOOKUP: destination MAC -> a local port, or the network's VNI on the tunnel to the
hypervisor that hosts the port.  Broadcast, multicast and unknown unicast go to the network's
flood group: its local ports and one bucket per other hypervisor that hosts the network.

A packet that came from a tunnel is never sent back into it: OpenFlow drops an output to the
ingress port.  That gives split horizon for floods (the tunnel buckets of a flood that came
from a tunnel do nothing) and no hairpinning between hypervisors, with one flood flow and one
group per network."""
from __future__ import annotations

from netvirt.controller.flows import Flow, Group, GroupAction, Output, SetField
from netvirt.controller.pipeline import TUNNEL_OFPORT, VNI_MASK, Table
from netvirt.topology.views import NetworkOnHv

T = Table.L2_LOOKUP


def l2_defaults() -> list[Flow]:
    return [Flow.make(T, 0, {}, [], "pipeline/L2_LOOKUP")]


def _to_tunnel(vni: int, remote_ip: str) -> tuple:
    return (SetField("tunnel_id", vni), SetField("tun_ipv4_dst", remote_ip), Output(TUNNEL_OFPORT))


def compile_l2(net: NetworkOnHv) -> tuple[list[Flow], list[Group]]:
    in_net = {"metadata": (net.vni, VNI_MASK)}
    flows = []
    bound = net.bound
    for port in bound:
        flows.append(Flow.make(T, 100, {**in_net, "eth_dst": port.mac}, [Output(port.ofport)],
                               port.origin))
    for port in net.remote:
        flows.append(Flow.make(T, 100, {**in_net, "eth_dst": port.mac},
                               _to_tunnel(net.vni, port.underlay_ip), port.origin))
    buckets = sorted((Output(p.ofport),) for p in bound)
    buckets += [_to_tunnel(net.vni, peer) for peer in net.peers]
    if not buckets:
        return flows, []
    group = Group(tuple(buckets), net.origin)
    flows.append(Flow.make(T, 10, in_net, [GroupAction(group.group_id)], net.origin))
    return flows, [group]
