"""PORT_SECURITY: a VM may only send untagged frames from its own MAC, and IPv4/ARP only
from its own addresses.  The flow that admits a packet also classifies it (writes the
network's VNI), so a port costs two flows per address here and none in CLASSIFY.
Everything else from a VM port (spoofed MAC or IP, an 802.1Q or 802.1ad tag, other
ethertypes, a port netvirt does not know) drops (the stage's miss).  ARP opcodes are
ARP_RESPONDER's to judge.  An allowed address pair (VRRP-style failover) is admitted like
an address of the port's own, from its MAC (the port's unless the pair names one)."""
from __future__ import annotations

from netvirt.pipeline.layout import ETH_ARP, ETH_IP, UNTAGGED, VNI_MASK
from netvirt.pipeline.records import Flow, Goto, WriteMetadata
from netvirt.pipeline.stages import following
from netvirt.pipeline.tables import Table
from netvirt.topology.views import NetworkOnHv

T = Table.PORT_SECURITY


def compile_port_security(net: NetworkOnHv) -> list[Flow]:
    admit = [WriteMetadata(net.vni, VNI_MASK), Goto(following(T))]
    flows = []
    for port in net.bound:
        for ip, mac in [(ip, port.mac) for ip in port.ips] + list(port.pairs):
            base = {"in_port": port.ofport, "vlan_vid": UNTAGGED, "eth_src": mac}
            flows.append(Flow.make(T, 100, {**base, "eth_type": ETH_IP, "ipv4_src": ip},
                                   admit, port.origin))
            flows.append(Flow.make(T, 100, {**base, "eth_type": ETH_ARP, "arp_spa": ip,
                                            "arp_sha": mac}, admit, port.origin))
    return flows
