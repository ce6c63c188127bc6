"""L2_LOOKUP: destination MAC -> a local port, or the network's VNI on the tunnel to the
hypervisor that hosts the port.  Broadcast, multicast and unknown unicast go to a flood group
that reaches the network's local ports and only the hypervisors hosting that network; what
arrived from a tunnel is flooded to local ports only (split horizon)."""
from __future__ import annotations

from netvirt.controller.flows import Flow, Group, GroupAction, Output, SetField
from netvirt.controller.pipeline import (FROM_TUNNEL, NET_AND_ORIGIN_MASK, TUNNEL_OFPORT,
                                         VNI_MASK, Table)
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

T = Table.L2_LOOKUP


def _to_tunnel(vni: int, remote_ip: str) -> tuple:
    return (SetField("tunnel_id", vni), SetField("tun_ipv4_dst", remote_ip), Output(TUNNEL_OFPORT))


def compile_l2(topo: Topology, hv: str, inv: Inventory) -> tuple[list[Flow], list[Group]]:
    flows = [Flow.make(T, 0, {}, [], "pipeline/L2_LOOKUP")]
    groups = []
    local = {ref.origin: ofport for ref, ofport in inv.bound_ports(topo, hv)}
    for tenant, net in topo.networks_on(hv):
        net_origin = f"tenant/{tenant}/network/{net.name}"
        local_buckets, remote_buckets = [], []
        for ref in topo.ports_of(tenant, net.name):
            dst = {"eth_dst": ref.port.mac}
            if ref.port.hypervisor == hv:
                if ref.origin in local:
                    ofport = local[ref.origin]
                    flows.append(Flow.make(T, 100, {**dst, "metadata": (net.vni, VNI_MASK)},
                                           [Output(ofport)], ref.origin))
                    local_buckets.append((Output(ofport),))
            else:
                rip = str(topo.hypervisors[ref.port.hypervisor].underlay_ip.ip)
                flows.append(Flow.make(T, 100, {**dst, "metadata": (net.vni, NET_AND_ORIGIN_MASK)},
                                       _to_tunnel(net.vni, rip), ref.origin))
        for remote in topo.hosts_of(tenant, net.name):
            if remote != hv:
                rip = str(topo.hypervisors[remote].underlay_ip.ip)
                remote_buckets.append(_to_tunnel(net.vni, rip))
        local_buckets.sort()
        for buckets, flag in ((local_buckets + remote_buckets, 0), (local_buckets, FROM_TUNNEL)):
            if not buckets:
                continue
            g = Group(tuple(buckets), net_origin)
            groups.append(g)
            flows.append(Flow.make(T, 10, {"metadata": (net.vni | flag, NET_AND_ORIGIN_MASK)},
                                   [GroupAction(g.group_id)], net_origin))
    return flows, groups
