"""`netvirt trace --real`: ask each hypervisor's ovs-vswitchd (`ofproto/trace`) what it does
with the packet the model says arrives there, map its cookies back to config origins, and
report every table where the model and the switch disagree.

ofproto/trace is reachable only through the daemon's unixctl socket, so this works for
hypervisors whose OVSDB endpoint is a local unix socket (the lab, a single-host setup): the
socket is ovs-vswitchd.ctl beside it.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from netvirt.config.schema import Hypervisor
from netvirt.pipeline.layout import (CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT,
                                     CT_TRK)
from netvirt.pipeline.records import origin_id
from netvirt.pipeline.stages import switch_learned
from netvirt.pipeline.tables import table_name
from netvirt.inspect.simulate import Network

# our packet field -> ofproto/trace (ovs-fields) name
OVS_FIELDS = {"in_port": "in_port", "eth_src": "dl_src", "eth_dst": "dl_dst",
              "ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "tcp_dst": "tcp_dst", "udp_dst": "udp_dst",
              "arp_op": "arp_op", "arp_spa": "arp_spa", "arp_tpa": "arp_tpa",
              "arp_sha": "arp_sha", "arp_tha": "arp_tha", "tunnel_id": "tun_id",
              "tun_ipv4_src": "tun_src", "tun_ipv4_dst": "tun_dst", "nw_ttl": "nw_ttl",
              "icmpv4_type": "icmp_type"}
_STEP = re.compile(r"^(\s*)(\d+)\. .*?priority (\d+)(?:, cookie (0x[0-9a-f]+))?")
_BRIDGE = re.compile(r'^(\s*)bridge\("([^"]+)"\)')


def appctl_socket(hv: Hypervisor) -> tuple[Path | None, str]:
    """ovs-vswitchd's control socket for ``hv``, or None and why there is none."""
    if not hv.ovsdb.startswith("unix:"):
        return None, (f"its OVSDB is {hv.ovsdb}, not a unix socket on this host, so its "
                      f"ovs-vswitchd control socket is not here either")
    ctl = Path(hv.ovsdb.removeprefix("unix:")).parent / "ovs-vswitchd.ctl"
    if not ctl.exists():
        return None, f"{ctl} does not exist: is ovs-vswitchd running there?"
    return ctl, ""


_PROTOCOL = {(0x0806, None): "arp", (0x0800, 1): "icmp", (0x0800, 6): "tcp",
             (0x0800, 17): "udp"}


def flow_string(pkt: dict) -> str:
    """The packet in ovs-fields syntax; the protocol keyword comes first, because the parser
    checks each field's prerequisites (udp_dst needs udp) as it reads them."""
    key = (pkt.get("eth_type"), pkt.get("ip_proto"))
    parts = [_PROTOCOL.get(key) or f"dl_type={pkt.get('eth_type', 0):#x}"]
    for k, v in pkt.items():
        if k in OVS_FIELDS:
            parts.append(f"{OVS_FIELDS[k]}={hex(v) if k == 'tunnel_id' else v}")
    return ",".join(parts)


def parse(output: str, bridge: str = "br-int") -> list[tuple[int, int, int]]:
    """(table, priority, cookie) of every flow of ``bridge`` the trace matched, in order.
    A native tunnel output nests the underlay bridge's trace, indented: a step belongs to
    the innermost bridge section whose header is indented no deeper than the step."""
    out, sections = [], []  # sections: [(indent, bridge name)]
    for line in output.splitlines():
        if m := _BRIDGE.match(line):
            sections = [sec for sec in sections if sec[0] < len(m[1])] + [(len(m[1]), m[2])]
        elif (m := _STEP.match(line)) and sections:
            owner = [name for indent, name in sections if indent <= len(m[1])]
            if owner and owner[-1] == bridge:
                out.append((int(m[2]), int(m[3]), int(m[4], 16) if m[4] else 0))
    return out


def compare(stage_entries: list[dict], net: Network, hypervisors: dict[str, Hypervisor],
            origins: dict[int, str]) -> list[dict]:
    """One report per switch the packet entered."""
    reports = []
    for e in stage_entries:
        hv, pkt = e["hypervisor"], e["packet"]
        # as it came: conntrack knows nothing of it yet (the trace's own walk committed it)
        local = net.fresh().inject(hv, pkt["in_port"],
                                   {k: v for k, v in pkt.items() if k != "in_port"},
                                   follow_tunnels=False)
        model = [(int(s.table), s.flow.priority, s.flow.cookie) if s.flow else
                 (int(s.table), 0, 0) for s in local.steps]
        # ofproto/trace follows each recirculation with the ct_state it is told, but not
        # what NAT did to the addresses: compare up to the first lookup after a NAT
        cut = next((i for h, _, translated, i in local.recirculations if translated), None)
        model = [m for m in model[:cut] if m[2]]
        report = {"hypervisor": hv, "flow": flow_string(pkt), "model": _named(model, origins)}
        if cut is not None:
            report["note"] = ("compared up to the router's NAT: ofproto/trace does not "
                              "follow a translated packet")
        ctl, why = appctl_socket(hypervisors[hv])
        if ctl is None:
            report["error"] = f"cannot run ofproto/trace on {hv}: {why}"
            reports.append(report)
            continue
        ct_next = [arg for _, state, _, _ in local.recirculations
                   for arg in ("--ct-next", ct_flags(state))]
        r = subprocess.run(["ovs-appctl", "-t", str(ctl), "ofproto/trace", "br-int",
                            flow_string(pkt), *ct_next], capture_output=True, text=True,
                           timeout=10)
        if r.returncode != 0:
            report["error"] = f"ofproto/trace failed on {hv}: {r.stderr.strip()}"
            reports.append(report)
            continue
        real = parse(r.stdout)
        if cut is not None:
            real = real[:len(model)]
        learned = next((i for i, (t, prio, _) in enumerate(real) if switch_learned(t, prio)),
                       None)
        if learned is not None:
            # a flow the switch learned (a client's affinity) is state the model does not
            # have: compare up to it; the switch follows it from there
            report["note"] = (f"compared up to {table_name(real[learned][0])}: the switch "
                              f"follows a flow it learned there, which the model does not know")
            model, real = model[:learned], real[:learned]
            report["model"] = _named(model, origins)
        report["real"] = _named(real, origins)
        report["datapath_actions"] = next((ln.split(":", 1)[1].strip() for ln in
                                           r.stdout.splitlines()
                                           if ln.startswith("Datapath actions:")), "")
        report["agree"] = real == model
        forwards = local.delivered or local.tunneled or local.to_controller
        if report["agree"] and forwards and report["datapath_actions"] == "drop":
            # the tables agree, but what the switch would do with the packet is not what
            # the model says: a disagreement all the same
            report["agree"] = False
            report["warning"] = "the switch's tables agree, but its datapath drops the packet"
            if "neighbor cache miss" in r.stdout:
                report["warning"] += (": the tunnel's underlay neighbour is not resolved yet (the "
                                      "userspace datapath drops while it ARPs for it); try again")
        reports.append(report)
    return reports


_CT_FLAGS = ((CT_NEW, "new"), (CT_EST, "est"), (CT_REL, "rel"), (CT_RPL, "rpl"),
             (CT_INV, "inv"), (CT_TRK, "trk"), (CT_SNAT, "snat"), (CT_DNAT, "dnat"))


def ct_flags(state: int) -> str:
    """A ct_state as ofproto/trace's --ct-next takes it: trk,new,snat."""
    return ",".join(name for bit, name in _CT_FLAGS if state & bit)


def _named(steps, origins: dict[int, str]) -> list[str]:
    return [f"{table_name(table)} prio={prio} "
            f"{origins.get(cookie >> 32, f'cookie {cookie:#x} (unknown origin)')}"
            for table, prio, cookie in steps]


def origin_index(per_hv: dict) -> dict[int, str]:
    return {origin_id(f.origin): f.origin for d in per_hv.values() for f in d.flows}
