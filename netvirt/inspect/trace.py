"""`netvirt trace`: walk a packet from a VM port through the compiled pipeline of every
hypervisor it reaches, and say for each table which flow matched and which YAML line made it.

Like a guest, the trace first resolves the destination IP with ARP through the pipeline (the
ARP responder answers, or the request floods unanswered), then sends the IP packet.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netvirt.config import LoadedConfig
from netvirt.config.schema import ipv4_syntax, mac_syntax
from netvirt.inspect.simulate import Network, Result
from netvirt.errors import UsageError
from netvirt.nfv.firewall import P_CUT as ACL_CUT
from netvirt.pipeline.layout import (CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT,
                                     CT_TRK, ICMP_ECHO_REQUEST, IP_PROTOCOLS, REG_OUT)
from netvirt.pipeline.records import CT, GroupAction, Learn, Resubmit, SetField, format_actions
from netvirt.pipeline.tables import Table
from netvirt.topology import Topology

BROADCAST = "ff:ff:ff:ff:ff:ff"
GUEST_TTL = 64


class TraceError(UsageError):
    """A trace request that names no known port, or is malformed."""


@dataclass(frozen=True)
class TraceRequest:
    source: str  # TENANT/PORT
    dst_ip: str
    proto: str = "icmp"
    dst_port: int | None = None
    src_ip: str | None = None  # override: a spoofed source
    src_mac: str | None = None

    @staticmethod
    def from_json(d: dict) -> "TraceRequest":
        try:
            req = TraceRequest(str(d["from"]), str(d["to_ip"]), str(d.get("proto", "icmp")),
                               d.get("dst_port"), d.get("src_ip"), d.get("src_mac"))
            for field, value in (("to_ip", req.dst_ip), ("src_ip", req.src_ip)):
                if value is not None:
                    try:
                        ipv4_syntax(value)
                    except ValueError as e:
                        raise ValueError(f"{field} {e}") from None
            if req.src_mac is not None:
                mac_syntax(req.src_mac)
            if req.dst_port is not None and not (isinstance(req.dst_port, int)
                                                 and 0 <= req.dst_port <= 65535):
                raise ValueError("dst_port is not a port number (0-65535)")
        except KeyError as e:
            raise TraceError(f"bad trace request: {e} is missing; give from=TENANT/PORT and "
                             f"to_ip=IPV4") from None
        except ValueError as e:
            raise TraceError(f"bad trace request: {e}") from None
        if req.proto not in IP_PROTOCOLS:
            raise TraceError(f"proto must be one of {', '.join(IP_PROTOCOLS)}")
        return req


def _port_name(topo: Topology, inventories: dict, hv: str, ofport: int) -> str:
    for ref in topo.ports_on(hv):
        if inventories[hv].ofports.get(ref.port.interface) == ofport:
            return f"{ref.tenant}/{ref.port.name}"
    for e in topo.externals_on(hv):
        if inventories[hv].ofports.get(e.interface) == ofport:
            return f"external network {e.name}"
    return f"ofport {ofport}"


def ct_state_text(state: int) -> str:
    """ct_state as OVS writes it: +trk+new, +trk+est+rpl, ..."""
    return "".join(f"+{name}" for bit, name in _CT_BITS if state & bit) or "-trk"


_CT_BITS = ((CT_TRK, "trk"), (CT_NEW, "new"), (CT_EST, "est"), (CT_REL, "rel"),
            (CT_RPL, "rpl"), (CT_INV, "inv"), (CT_SNAT, "snat"), (CT_DNAT, "dnat"))


def _choices(f, net: Network, hv: str) -> list[dict] | None:
    """A select group's buckets (a load balancer's members), the one this trace follows
    (the heaviest: which one a real connection gets depends on its 5-tuple's hash) marked."""
    group = _select_group(f, net, hv)
    if group is None:
        return None
    heaviest = max(range(len(group.buckets)), key=lambda i: group.weights[i])
    out = []
    for i, (bucket, weight) in enumerate(zip(group.buckets, group.weights, strict=True)):
        nat = next((a.nat for a in _bucket_actions(bucket, f, net, hv)
                    if isinstance(a, CT) and a.nat), None)
        to = f"{nat.ip_min}:{nat.port_min}" if nat else format_actions(bucket)
        out.append({"to": to, "weight": weight, "followed": i == heaviest})
    return out


def _select_group(f, net: Network, hv: str):
    ids = [a.group_id for a in f.actions if isinstance(a, GroupAction)] if f else []
    group = net.groups[hv].get(ids[0]) if ids else None
    return group if group is not None and group.kind == "select" else None


def _bucket_actions(bucket: tuple, f, net: Network, hv: str) -> tuple:
    """A bucket's actions, or (one that names its member in registers and resubmits, as
    source affinity's do) the actions of the flow it resubmits to for that member: the one
    whose match is the group's flow's plus the registers the bucket sets."""
    again = next((a.table for a in bucket if isinstance(a, Resubmit)), None)
    if again is None:
        return bucket
    named = {a.field: a.value for a in bucket if isinstance(a, SetField)}
    want = tuple(sorted({**dict(f.match), **named}.items()))
    return next((g.actions for g in net.flows(hv, again) if g.match == want), bucket)


def _affinity(f, net: Network, hv: str) -> int | None:
    """The idle timeout of the source affinity a select group's members are learned with."""
    group = _select_group(f, net, hv)
    learns = [a for b in group.buckets for a in _bucket_actions(b, f, net, hv)
              if isinstance(a, Learn)] if group else []
    return learns[0].idle_timeout if learns else None


def _steps(res: Result, loaded: LoadedConfig, net: Network) -> list[dict]:
    out = []
    after_ct = {i: (hv, state) for hv, state, _, i in res.recirculations}
    dropped = {id(s) for s in res.dropped_at}  # the simulator's verdict, not a second one
    for n, s in enumerate(res.steps):
        f = s.flow
        loc = loaded.location(f.origin) if f else None
        out.append({"hypervisor": s.hv, "table": s.table.name,
                    # the connection state this lookup assumed (it follows a ct())
                    "ct_state": ct_state_text(after_ct[n][1]) if n in after_ct else None,
                    "flow": str(f) if f else "no flow matched",
                    "priority": f.priority if f else None,
                    "cookie": f"{f.cookie:#x}" if f else None,
                    "origin": f.origin if f else None,
                    "defined_at": str(loc) if loc else None,
                    # an empty lookup that is no drop: a resubmitted table's, which returns
                    "action": "continue" if f is not None and f.actions else
                              "drop" if id(s) in dropped else "return",
                    "choices": _choices(f, net, s.hv),
                    "affinity_timeout": _affinity(f, net, s.hv)})
    return out


def _delivered(res: Result, topo: Topology, inventories: dict) -> list[dict]:
    return [{"hypervisor": hv, "ofport": port, "port": _port_name(topo, inventories, hv, port)}
            for hv, port in sorted(res.ports())]


def _stage(res: Result, loaded, topo, inventories, net: Network) -> dict:
    # what the firewall denies goes to the controller only for the drop log: a drop
    denied = [s for s in res.punted_at if s.table in ACL_TABLES]
    return {"steps": _steps(res, loaded, net), "delivered": _delivered(res, topo, inventories),
            "dropped_by": [_dropped_by(s, loaded, topo, inventories)
                           for s in res.dropped_at + denied],
            "punted_by": [f"{s.hv} {s.table.name}: {s.flow}" for s in res.punted_at
                          if s.table not in ACL_TABLES],
            "entries": [{"hypervisor": hv, "packet": pkt} for hv, pkt in res.entries]}


def trace(req: TraceRequest, loaded: LoadedConfig, topo: Topology, net: Network,
          inventories: dict) -> dict:
    tenant, _, name = req.source.partition("/")
    try:
        src = topo.port(tenant, name)
    except KeyError:
        known = ", ".join(f"{t.name}/{p.name}" for t in loaded.config.tenants for p in t.ports)
        raise TraceError(f"no port {req.source!r} in the config; known: {known}") from None
    hv = src.port.hypervisor
    ofport = inventories[hv].ofports.get(src.port.interface)
    if ofport is None:
        raise TraceError(f"{req.source} has no ofport on {hv}: its interface "
                         f"{src.port.interface} is not on br-int (is the VM running?)")
    mac = req.src_mac or src.port.mac
    ip = req.src_ip or str(src.port.ips[0])
    if req.dst_ip in {str(a) for a in src.port.ips}:
        raise TraceError(f"{req.dst_ip} is {req.source}'s own address: its packets to it never "
                         f"leave the guest; trace to another address")
    # As a guest does: a destination outside its subnets is reached through the gateway.
    dst = ipaddress.IPv4Address(req.dst_ip)
    nexthop = req.dst_ip
    if not any(dst in s.cidr for s in src.network.subnets):
        gateway = next((s.gateway for s in src.network.subnets
                        if s.gateway and ipaddress.IPv4Address(ip) in s.cidr), None)
        if gateway is None:
            return {"from": req.source, "hypervisor": hv, "request": vars(req),
                    "delivered": [], "verdict": (
                        f"not delivered: {req.dst_ip} is outside {src.tenant}/"
                        f"{src.network.name}'s subnets and the subnet has no gateway, so the "
                        f"guest has no route to it")}
        nexthop = str(gateway)
    arp = net.inject(hv, ofport, {"eth_src": mac, "eth_dst": BROADCAST, "eth_type": 0x0806,
                                  "arp_op": 1, "arp_sha": mac, "arp_spa": ip,
                                  "arp_tpa": nexthop})
    result = {"from": req.source, "hypervisor": hv, "request": vars(req),
              "arp": _stage(arp, loaded, topo, inventories, net)}
    answer = next((dict(p) for h, port, p in arp.delivered
                   if (h, port) == (hv, ofport) and dict(p).get("arp_op") == 2), None)
    if answer is None:
        result["verdict"] = "not delivered: " + _unanswered(result["arp"], arp, hv, nexthop, src)
        if nexthop != req.dst_ip:
            result["verdict"] += f" ({nexthop} is the gateway the guest sends {req.dst_ip} to)"
        result["delivered"] = []
        return result
    # a guest's TTL (ofproto/trace would take 0, which a router sends to the controller)
    pkt = {"eth_src": mac, "eth_dst": answer["arp_sha"], "eth_type": 0x0800, "ipv4_src": ip,
           "ipv4_dst": req.dst_ip, "ip_proto": IP_PROTOCOLS[req.proto], "nw_ttl": GUEST_TTL}
    if req.proto == "icmp":
        pkt["icmpv4_type"] = ICMP_ECHO_REQUEST
    if req.dst_port is not None and req.proto != "icmp":
        pkt[f"{req.proto}_dst"] = int(req.dst_port)
    res = net.inject(hv, ofport, pkt)
    result["packet"] = _stage(res, loaded, topo, inventories, net)
    result["delivered"] = result["packet"]["delivered"]
    result["verdict"] = _verdict(result["packet"], hv)
    return result


ACL_TABLES = {Table.ACL_FROM_VM: ("sends", "egress"), Table.ACL_TO_VM: ("receives", "ingress")}


def _dropped_by(s, loaded: LoadedConfig, topo: Topology, inventories: dict) -> str:
    if s.flow is None:
        return f"{s.hv} {s.table.name}: no flow matched"
    if s.table not in ACL_TABLES:
        return f"{s.hv} {s.table.name}: {s.flow}"
    # the firewall: say whose, which direction, and what would let it through
    verb, direction = ACL_TABLES[s.table]
    field = "in_port" if s.table == Table.ACL_FROM_VM else REG_OUT
    ofport = dict(s.flow.match).get(field)
    tenant = s.flow.origin.split("/")[1] if s.flow.origin.startswith("tenant/") else None
    who = _port_name(topo, inventories, s.hv, ofport) if ofport is not None else None
    if s.flow.origin.endswith("/firewall") and who is not None:
        port = topo.port(*who.split("/"))
        groups = ", ".join(port.port.security_groups) or "none"
        loc = loaded.location(s.flow.origin)
        return (f"{s.hv} {s.table.name}: the firewall of {who}: no rule of its security groups "
                f"({groups}) allows what it {verb}, and tenant {tenant}'s default for "
                f"{direction} is deny" + (f" ({loc})" if loc else "") + "; in the drop log")
    if s.flow.priority == ACL_CUT:
        return (f"{s.hv} {s.table.name}: the firewall: the connection's rule is gone and "
                f"no other allows it (or it is a reply to a connection not allowed)")
    return f"{s.hv} {s.table.name}: the firewall: {s.flow}"


def _unanswered(stage: dict, res: Result, hv: str, ip: str, src) -> str:
    if not stage["delivered"] and all(e_hv == hv for e_hv, _ in res.entries):
        # it never left the asking VM's switch: say which flow stopped it
        return "the ARP request was " + _verdict(stage, hv)
    reached = ", ".join(d["port"] for d in stage["delivered"]) or "no other port"
    dropped = ", ".join(f"{s.hv} {s.table.name}" for s in res.dropped_at)
    return (f"ARP for {ip} is not answered in {src.tenant}/{src.network.name}: no port there "
            f"has that address (request reached: {reached}; dropped by: {dropped or 'none'})")


PUNTED = {"L3_INPUT": "its TTL would run out: the router answers time exceeded",
          "L3_RESOLVE": "its next hop's MAC on the external network is not learned yet: the "
                        "controller ARPs for it, and the next packet goes out",
          "DHCP": "the controller answers DHCP"}


def _verdict(stage: dict, src_hv: str) -> str:
    if not stage["delivered"] and stage.get("punted_by"):
        table = stage["punted_by"][0].split()[1].rstrip(":")
        return (f"sent to the controller by {stage['punted_by'][0]} ("
                f"{PUNTED.get(table, 'a packet-in service')})")
    if not stage["delivered"]:
        return "dropped by " + "; ".join(stage["dropped_by"])
    parts = []
    for d in stage["delivered"]:
        via = "locally" if d["hypervisor"] == src_hv else \
            f"via tunnel {src_hv} -> {d['hypervisor']}"
        parts.append(f"{d['port']} (ofport {d['ofport']}) on {d['hypervisor']} {via}")
    return "delivered to " + "; ".join(parts)
