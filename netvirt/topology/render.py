"""Renderings of the live topology (the /v1/topology JSON): a text tree, a networkx graph,
Graphviz dot and PNG.  The PNG is drawn by Graphviz from the same networkx graph."""
from __future__ import annotations

import networkx as nx

from netvirt.errors import NetvirtError, UsageError


def _updown(ok: bool) -> str:
    return "up" if ok else "DOWN"


def tree(t: dict) -> list[str]:
    lines = [f"revision {t['revision']}" + (f" ({t['config']})" if t.get("config") else "")]
    lines.append("hypervisors")
    for h in t["hypervisors"]:
        k = h["kernel"]
        netem = "unknown" if k["netem"] is None else ("yes" if k["netem"] else "NO")
        lines.append(f"  {h['name']}  {'connected' if h['connected'] else 'DISCONNECTED'}  "
                     f"{h['datapath_type'] or '?'}  underlay {h['underlay_ip']}  netem {netem}")
        for b in h["bridges"]:
            lines.append(f"    bridge {b['name']} {_updown(b['up'])}")
        tun = h["tunnel"]
        lines.append(f"    tunnel {tun['port']} ofport {tun['ofport']} {_updown(tun['up'])} -> "
                     f"{', '.join(tun['remotes']) or 'no remotes'}")
    lines.append("tenants")
    for ten in t["tenants"]:
        lines.append(f"  {ten['name']}")
        for n in ten["networks"]:
            subnets = ", ".join(s["cidr"] + (f" gw {s['gateway']}" if s["gateway"] else "")
                                for s in n["subnets"])
            lines.append(f"    {n['name']}  vni {n['vni']}  {subnets}")
            for p in n["ports"]:
                lines.append(f"      {p['name']:<12} {p['hypervisor']:<8} ofport "
                             f"{p['ofport'] if p['ofport'] is not None else '-':<5} "
                             f"{_updown(p['up']):<4} {p['mac']}  {', '.join(p['ips'])}")
                if p.get("qos"):
                    lines.extend(_qos_lines(p["qos"]))
        if ten.get("aggregate_qos"):
            a = ten["aggregate_qos"]
            lines.append(f"    aggregate qos {a['policy']} (per hypervisor, shared by the "
                         f"tenant's ports there): {_directions(a)}")
        for r in ten.get("routers", ()):
            lines.extend(_router_lines(r))
        for g in ten.get("security_groups", ()):
            lines.extend(_group_lines(g))
        for lb in ten.get("load_balancers", ()):
            v = lb["vip"]
            lines.append(f"    load balancer {lb['name']}  {v['protocol']} {v['ip']}:{v['port']}"
                         f"  on {lb['network']}  zone {lb['zone']}{_affinity(lb)}"
                         f"{_check(lb['health_check'])}")
            for m in lb["members"]:
                health = f"  {m['health']} since {m['since']}" if m.get("health") else ""
                if m.get("health") == "down" and m.get("last_check"):
                    health += f", last check: {m['last_check']}"
                lines.append(f"      member {m['port']:<12} {m['ip']}:{m['target_port']}  "
                             f"weight {m['weight']}{health}")
    return lines


def _directions(q: dict) -> str:
    parts = [f"{side} " + " ".join(f"{k} {v}" for k, v in q[side].items())
             for side in ("to_vm", "from_vm") if q.get(side)]
    return "; ".join(parts)


def _qos_lines(q: dict) -> list[str]:
    lines = [f"        qos {q['policy']}: {_directions(q)}"]
    gap = q.get("not_enforced")
    if gap:
        lines.append(f"          NOT ENFORCED: {', '.join(gap['parts'])} ({gap['why']})")
    elif q.get("pending"):
        lines.append("          to_vm: the node agent is putting it in place")
    kernel = q.get("kernel")
    for kind, c in sorted((kernel or {}).get("counters", {}).items()):
        lines.append(f"          tc {kind}: sent {c['bytes']} bytes {c['packets']} packets, "
                     f"dropped {c['drops']}, overlimits {c['overlimits']}")
    return lines


def _affinity(lb: dict) -> str:
    t = lb.get("affinity_timeout")
    return f"  source affinity {t}s" if t else ""


def _check(hc: dict | None) -> str:
    if hc is None:
        return "  no health check"
    what = (f"GET {hc['path']} expects {'/'.join(map(str, hc['expect']))}"
            if hc["type"] == "http" else "tcp connect")
    return f"  checks: {what} every {hc['interval']:g}s"


def _group_lines(g: dict) -> list[str]:
    lines = [f"    security group {g['name']}  members: {', '.join(g['members']) or 'none'}"]
    for r in g["rules"]:
        what = r.get("protocol", "any")
        if "ports" in r:
            what += f" {r['ports']}"
        if "icmp_type" in r:
            what += f" type {r['icmp_type']}" + (f" code {r['icmp_code']}" if "icmp_code" in r else "")
        remote = r.get("remote_cidr") or (f"group {r['remote_group']}" if "remote_group" in r
                                           else "anywhere")
        side = "from" if r["direction"] == "ingress" else "to"
        n = r["connections"]
        lines.append(f"      rule {r['index']}  {r['direction']:<7} {what:<16} {side} {remote}  "
                     f"{'-' if n is None else n} connection(s)")
    return lines


def _router_lines(r: dict) -> list[str]:
    lines = [f"    router {r['name']}  on {', '.join(r['hypervisors']) or 'no hypervisor'}"]
    for i in r["interfaces"]:
        lines.append(f"      interface {i['network']:<12} {i['ip']:<15} {i['mac']}")
    for rt in r["routes"]:
        lines.append(f"      route {rt['destination']} via {rt['next_hop']}")
    gw = r["external_gateway"]
    if gw:
        lines.append(f"      external {gw['network']}  {gw['ip']}  snat "
                     f"{'on' if gw['snat'] else 'off'}  gateway {gw['gateway_hypervisor']}")
    for f in r["floating_ips"]:
        lines.append(f"      floating ip {f['ip']} -> {f['fixed_ip']}")
    return lines


def graph(t: dict) -> nx.Graph:
    """One node per hypervisor and per port; ports hang off their hypervisor, hypervisors are
    joined where they share a network (the tunnels that carry traffic)."""
    g = nx.Graph()
    for h in t["hypervisors"]:
        g.add_node(f"hv_{h['name']}", kind="hypervisor", label=f"{h['name']}\\n{h['underlay_ip']}",
                   shape="box", color="black" if h["connected"] else "red")
    for h in t["hypervisors"]:
        for r in h["tunnel"]["remotes"]:
            g.add_edge(f"hv_{h['name']}", f"hv_{r}", style="dashed", label="vxlan")
    for ten in t["tenants"]:
        for n in ten["networks"]:
            for p in n["ports"]:
                node = f"port_{ten['name']}_{p['name']}"
                g.add_node(node, kind="port", shape="ellipse",
                           label=f"{ten['name']}/{p['name']}\\n{', '.join(p['ips'])}\\nvni {n['vni']}",
                           color="black" if p["up"] else "red")
                g.add_edge(node, f"hv_{p['hypervisor']}")
    return g


def dot(t: dict) -> str:
    return nx.nx_pydot.to_pydot(graph(t)).to_string()


def png(t: dict, path: str) -> None:
    import shutil

    if not shutil.which("dot"):
        raise NetvirtError("rendering a PNG needs Graphviz's `dot`: apt-get install graphviz "
                           "(or use --dot and render it elsewhere)")
    try:
        nx.nx_pydot.to_pydot(graph(t)).write_png(path)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
