"""CLASSIFY: which network does a packet belong to?  Local ports and tunnel keys map to the
network's VNI in metadata; anything else (unknown ports, unknown VNIs, unknown tunnel
sources) is dropped here."""
from __future__ import annotations

from netvirt.controller.flows import Flow, Goto, WriteMetadata
from netvirt.controller.pipeline import FROM_TUNNEL, NET_AND_ORIGIN_MASK, TUNNEL_OFPORT, Table
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory

T = Table.CLASSIFY


def compile_classify(topo: Topology, hv: str, inv: Inventory) -> list[Flow]:
    flows = [Flow.make(T, 0, {}, [], "pipeline/CLASSIFY")]
    for ref, ofport in inv.bound_ports(topo, hv):
        flows.append(Flow.make(T, 100, {"in_port": ofport},
                               [WriteMetadata(ref.network.vni, NET_AND_ORIGIN_MASK),
                                Goto(T.next())], ref.origin))
    # Tunnel traffic is accepted only from hypervisors that host the same network.
    for tenant, net in topo.networks_on(hv):
        for remote in topo.hosts_of(tenant, net.name):
            if remote == hv:
                continue
            rip = str(topo.hypervisors[remote].underlay_ip.ip)
            flows.append(Flow.make(
                T, 100, {"in_port": TUNNEL_OFPORT, "tunnel_id": net.vni, "tun_ipv4_src": rip},
                [WriteMetadata(net.vni | FROM_TUNNEL, NET_AND_ORIGIN_MASK), Goto(Table.L2_LOOKUP)],
                f"tenant/{tenant}/network/{net.name}"))
    return flows
