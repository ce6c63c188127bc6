"""Generate tenant configs of any size for the benchmarks.

Ports are grouped into networks of NET_SIZE ports (one tenant per TENANT_NETS networks); a
network's ports are placed on SPAN consecutive hypervisors, as a scheduler that keeps a
tenant's VMs together would.  Every port gets a fixed MAC and IP, so configs compare.
With ``routed``, each tenant has a router with an interface on each of its networks (at
the subnet's gateway, .254)."""
from __future__ import annotations

import yaml

NET_SIZE = 20
TENANT_NETS = 5


def config(n_ports: int, n_hvs: int, *, span: int = 3, rundir: str = "/run/netvirt-bench",
           openflow: str = "tcp:172.30.8.1:6653", api: str = "127.0.0.1:18281",
           interface_type: str = "dummy", real_ports: dict | None = None,
           net_size: int = NET_SIZE, tenant_nets: int = TENANT_NETS,
           routed: bool = False) -> dict:
    """``real_ports``: {index: hypervisor} ports that are real veth VMs (for traffic)."""
    hvs = [{"name": f"hv{i + 1}", "underlay_ip": f"192.168.58.{i + 1}/24",
            "ovsdb": f"unix:{rundir}/hv{i + 1}/db.sock", "datapath_type": "netdev"}
           for i in range(n_hvs)]
    tenants: dict[int, dict] = {}
    real_ports = real_ports or {}
    for p in range(n_ports):
        net, k = divmod(p, net_size)
        t = tenants.setdefault(net // tenant_nets, {"name": f"t{net // tenant_nets}",
                                                    "networks": [], "ports": []})
        nname = f"n{net}"
        if k == 0:
            third = net % 200
            t["networks"].append({"name": nname, "vni": 1000 + net,
                                  "subnets": [{"cidr": f"10.{third // 200}.{third}.0/24"}]})
        span_here = min(span, n_hvs)
        hv = p // net_size % n_hvs + (k % span_here)
        port = {"name": f"p{p}", "network": nname,
                "hypervisor": real_ports.get(p, f"hv{hv % n_hvs + 1}"),
                "ips": [f"10.0.{net % 200}.{k + 1}"], "mac": _mac(p)}
        if p not in real_ports:
            port["interface_type"] = interface_type
            port["interface"] = f"d{p}"
        tenants[net // tenant_nets]["ports"].append(port)
    for t in tenants.values():
        for n in t["networks"]:
            third = int(n["name"][1:]) % 200
            n["subnets"] = [{"cidr": f"10.0.{third}.0/24"}]
            if routed:
                n["subnets"][0]["gateway"] = f"10.0.{third}.254"
        if routed:
            t["routers"] = [{"name": "r", "interfaces": [{"network": n["name"]}
                                                         for n in t["networks"]]}]
    return {"controller": {"openflow": openflow, "api": api}, "hypervisors": hvs,
            "tenants": list(tenants.values())}


def _mac(p: int) -> str:
    return "02:%02x:%02x:%02x:%02x:%02x" % (0xb0, (p >> 24) & 255, (p >> 16) & 255,
                                            (p >> 8) & 255, p & 255)


def text(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
