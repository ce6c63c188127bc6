"""The live topology: the config joined with what each hypervisor really has, as JSON-ready
data.  Served by the API (/v1/topology) and rendered by `netvirt topo`."""
from __future__ import annotations

import time

from netvirt.config import LoadedConfig
from netvirt.pipeline.layout import TUNNEL_PORT_NAME
from netvirt.topology.balancer import lb_origin, member_origin
from netvirt.topology.graph import Topology
from netvirt.config.qos import aggregate_policy, port_policy
from netvirt.topology.qos import describe, enforcement


def utc(ts: float) -> str:
    """A wall-clock time as the API gives every time: ISO 8601, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def live_topology(rev: int, loaded: LoadedConfig | None, topo: Topology | None,
                  agents: dict, rule_hits: dict | None = None, health: dict | None = None) -> dict:
    """``agents``: hypervisor name -> object with ``status`` (AgentStatus), ``inventory``
    and ``node_qos`` (its node's QoS report);
    ``rule_hits``: a security-group rule's origin -> the connections it allowed;
    ``health``: a load balancer member's origin -> its MemberHealth."""
    if loaded is None:
        return {"revision": rev, "hypervisors": [], "tenants": []}
    hvs = []
    for h in loaded.config.hypervisors:
        a = agents.get(h.name)
        st = a.status if a else None
        inv = a.inventory if a else None
        qdiscs = st.kernel_qdiscs if st else None
        remotes = sorted({r for t, n in topo.networks_on(h.name)
                          for r in topo.hosts_of(t, n.name) if r != h.name})
        hvs.append({
            "name": h.name,
            "underlay_ip": str(h.underlay_ip),
            "ovsdb": h.ovsdb,
            "datapath_type": (st.datapath_type if st else "") or h.datapath_type or "",
            "connected": bool(st and st.switch_connected),
            "ovsdb_connected": bool(st and st.ovsdb_connected),
            "in_sync": bool(st and st.in_sync),
            "kernel": {"qdiscs": qdiscs, "netem": None if qdiscs is None else "netem" in qdiscs},
            "node": st.node if st else None,
            "bridges": [{"name": b, "up": bool(st and st.switch_connected) if b == "br-int"
                         else True} for b in (st.bridges if st else [])],
            "tunnel": {"port": TUNNEL_PORT_NAME,
                       "ofport": inv.ofports.get(TUNNEL_PORT_NAME) if inv else None,
                       "up": bool(inv and inv.link_up.get(TUNNEL_PORT_NAME)),
                       "remotes": remotes},
        })
    gaps = {h.name: qos_gaps(topo, h.name, agents.get(h.name)) for h in loaded.config.hypervisors}
    tenants = []
    for t in loaded.config.tenants:
        nets = []
        for n in t.networks:
            ports = []
            for ref in topo.ports_of(t.name, n.name):
                a = agents.get(ref.port.hypervisor)
                inv = a.inventory if a else None
                iface = ref.port.interface
                loc = loaded.location(ref.origin)
                ports.append({
                    "name": ref.port.name, "hypervisor": ref.port.hypervisor,
                    "interface": iface, "ofport": inv.ofports.get(iface) if inv else None,
                    "up": bool(inv and inv.link_up.get(iface)), "mac": ref.port.mac,
                    "ips": [str(ip) for ip in ref.port.ips],
                    "defined_at": str(loc) if loc else None,
                    "qos": _port_qos(t, ref, loaded, gaps[ref.port.hypervisor].get(iface),
                                     a.node_qos.get(iface) if a else None),
                })
            nets.append({"name": n.name, "vni": n.vni, "mtu": n.mtu,
                         "subnets": [{"cidr": str(s.cidr),
                                      "gateway": str(s.gateway) if s.gateway else None}
                                     for s in n.subnets],
                         "ports": ports})
        tenants.append({"name": t.name, "networks": nets,
                        "routers": [_router(topo.router(t.name, r.name), topo, loaded)
                                    for r in t.routers],
                        "firewall": t.firewall.model_dump(),
                        "security_groups": [_group(t, g, loaded, rule_hits or {})
                                            for g in t.security_groups],
                        "load_balancers": [_balancer(t, lb, loaded, health or {})
                                           for lb in t.load_balancers],
                        "aggregate_qos": _aggregate(t, loaded)})
    return {"revision": rev, "config": loaded.filename, "hypervisors": hvs, "tenants": tenants}


def qos_gaps(topo: Topology, hv: str, agent) -> dict[str, dict]:
    """enforcement() of ``hv`` from what its agent knows."""
    st = agent.status if agent else None
    return enforcement(topo, hv, st.node if st else None, st.kernel_qdiscs if st else None,
                       agent.node_qos if agent else {})


def _port_qos(t, ref, loaded: LoadedConfig, gap: dict | None, node: dict | None) -> dict | None:
    q = port_policy(t, ref.port, ref.network)
    if q is None:
        return None
    loc = loaded.location(f"tenant/{t.name}/qos_policy/{q.name}")
    return {"policy": q.name, "defined_at": str(loc) if loc else None,
            "to_vm": describe(q.to_vm), "from_vm": describe(q.from_vm),
            "not_enforced": gap if gap and gap["parts"] else None,
            "pending": bool(gap and gap["pending"]),
            # what the kernel holds: netvirt's qdiscs on the device and their counters
            "kernel": {"held": node["held"], "counters": node["counters"]} if node else None}


def _aggregate(t, loaded: LoadedConfig) -> dict | None:
    q = aggregate_policy(t)
    if q is None:
        return None
    loc = loaded.location(f"tenant/{t.name}/qos_policy/{q.name}")
    return {"policy": q.name, "defined_at": str(loc) if loc else None,
            "to_vm": describe(q.to_vm), "from_vm": describe(q.from_vm)}


def _router(ref, topo: Topology, loaded: LoadedConfig) -> dict:
    r, loc = ref.router, loaded.location(ref.origin)
    gw = r.external_gateway
    return {
        "name": r.name, "defined_at": str(loc) if loc else None,
        "hypervisors": list(topo.router_hosts(ref)),
        "interfaces": [{"network": i.network.name, "ip": i.ip, "mac": i.mac}
                       for i in ref.interfaces],
        "routes": [{"destination": str(rt.destination), "next_hop": str(rt.next_hop)}
                   for rt in r.routes],
        "external_gateway": None if gw is None else {
            "network": gw.network, "ip": str(gw.ip), "snat": gw.snat,
            "gateway_hypervisor": ref.gateway_hv},
        "floating_ips": [{"ip": fip, "fixed_ip": fixed} for fixed, fip, _ in ref.floating_ips],
    }


def _balancer(t, lb, loaded: LoadedConfig, health: dict) -> dict:
    loc = loaded.location(lb_origin(t.name, lb.name))
    ips = {p.name: str(p.ips[0]) for p in t.ports}

    def state(port: str) -> dict:
        h = health.get(member_origin(t.name, lb.name, port))
        if lb.health_check is None or h is None:
            return {"health": None, "since": None, "last_check": None}  # it takes its share
        return {"health": ("up" if h.up else "down") if h.checked else "unchecked",
                "since": utc(h.since), "last_check": h.last or None}
    return {"name": lb.name, "network": lb.network, "defined_at": str(loc) if loc else None,
            "vip": {"ip": str(lb.vip.ip), "protocol": lb.vip.protocol, "port": lb.vip.port},
            "zone": t.zone, "algorithm": lb.algorithm,
            "affinity_timeout": lb.affinity,
            "health_check": lb.health_check.model_dump()
            if lb.health_check else None,
            "members": [{"port": m.port, "ip": ips.get(m.port), "target_port": m.target_port,
                         "weight": m.weight, **state(m.port)} for m in lb.members]}


def _group(t, g, loaded: LoadedConfig, hits: dict) -> dict:
    rules = []
    for i, r in enumerate(g.rules):
        origin = f"tenant/{t.name}/security_group/{g.name}/rule/{i}"
        loc = loaded.location(origin)
        rules.append({**r.model_dump(mode="json", exclude_none=True), "index": i,
                      "defined_at": str(loc) if loc else None,
                      "connections": hits.get(origin)})
    return {"name": g.name, "rules": rules,
            "members": [p.name for p in t.ports if g.name in (p.security_groups or ())]}
