"""A model of connection tracking, as OVS's ct() action sees it, for the simulator.

One table per hypervisor, keyed by (zone, 5-tuple) in both directions.  What it models:
- a packet of a committed connection is +trk+est, a reply +trk+est+rpl;
- any other packet is +trk+new, except a TCP SYN+ACK (+trk+inv: OVS refuses to start a
  connection half-open, while it picks one up from any other segment, as Linux does with
  tcp_loose), and an ICMP error whose embedded packet belongs to a committed connection
  (+trk+rel);
- only commit records a connection, and the state a packet sees is the one before its own
  commit (the first packet of a connection is +new even as it commits);
- nat with a kind on a committed new connection translates it; a later ct(nat) of the
  same connection translates its packets again (and its replies back), as OVS does.
What it leaves out: timeouts, TCP window tracking, helpers (ALGs), expectations.
"""
from __future__ import annotations

from dataclasses import dataclass

from netvirt.pipeline.layout import (CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT,
                                     CT_TRK)
from netvirt.pipeline.records import CT, NAT

PORT_FIELDS = {6: ("tcp_src", "tcp_dst"), 17: ("udp_src", "udp_dst")}
TCP_SYN, TCP_ACK = 0x002, 0x010
ICMP_ERRORS = (3, 11, 12)  # destination unreachable, time exceeded, parameter problem


def five_tuple(pkt: dict) -> tuple:
    proto = pkt.get("ip_proto")
    sport, dport = PORT_FIELDS.get(proto, (None, None))
    return (proto, pkt.get("ipv4_src"), pkt.get(sport) if sport else None,
            pkt.get("ipv4_dst"), pkt.get(dport) if dport else None)


def reverse(t: tuple) -> tuple:
    proto, a, ap, b, bp = t
    return (proto, b, bp, a, ap)


@dataclass
class Connection:
    zone: int
    orig: tuple  # as the first packet had it
    reply: tuple  # as replies have it (after translation)
    mark: int = 0
    nat: NAT | None = None  # the translation committed with it

    @property
    def translated(self) -> tuple:
        """The original direction as it leaves conntrack (after NAT)."""
        return reverse(self.reply)


def _rewrite(pkt: dict, t: tuple) -> None:
    """Give ``pkt`` the addresses and ports of 5-tuple ``t``."""
    proto, src, sport, dst, dport = t
    pkt["ipv4_src"], pkt["ipv4_dst"] = src, dst
    if proto in PORT_FIELDS:
        s, d = PORT_FIELDS[proto]
        pkt[s], pkt[d] = sport, dport


def _nat_tuple(t: tuple, nat: NAT) -> tuple:
    proto, src, sport, dst, dport = t
    if nat.kind == "src":
        return (proto, nat.ip_min, nat.port_min or sport, dst, dport)
    return (proto, src, sport, nat.ip_min, nat.port_min or dport)


class Conntrack:
    def __init__(self):
        self._conns: dict[tuple, tuple[Connection, bool]] = {}  # (zone, tuple) -> (conn, reply)

    def __len__(self) -> int:
        return len({id(c) for c, _ in self._conns.values()})

    def execute(self, ct: CT, pkt: dict) -> tuple[int, int]:
        """Run ``ct`` on ``pkt`` (translated in place where NAT applies); returns the
        (ct_state, ct_mark) a recirculated copy of the packet sees."""
        t = five_tuple(pkt)
        found = self._conns.get((ct.zone, t))
        if found is not None:
            conn, is_reply = found
            state = CT_TRK | CT_EST | (CT_RPL if is_reply else 0)
            if ct.nat is not None and conn.nat is not None:
                _rewrite(pkt, reverse(conn.orig) if is_reply else conn.translated)
                state |= CT_SNAT if conn.nat.kind == "src" else CT_DNAT
            if ct.commit and ct.mark is not None:
                conn.mark = ct.mark
            return state, conn.mark
        if self._related(ct.zone, pkt):
            return CT_TRK | CT_REL, 0
        if t[0] == 6 and pkt.get("tcp_flags", TCP_SYN) & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
            return CT_TRK | CT_INV, 0
        state = CT_TRK | CT_NEW
        if ct.commit:
            out = t
            nat = ct.nat if ct.nat is not None and ct.nat.kind else None
            if nat is not None:
                out = _nat_tuple(t, nat)
                _rewrite(pkt, out)
                state |= CT_SNAT if nat.kind == "src" else CT_DNAT
            conn = Connection(ct.zone, t, reverse(out), ct.mark or 0, nat)
            self._conns[(ct.zone, t)] = (conn, False)
            self._conns[(ct.zone, conn.reply)] = (conn, True)
        return state, (ct.mark or 0) if ct.commit else 0

    def _related(self, zone: int, pkt: dict) -> bool:
        inner = pkt.get("icmp_inner")  # the 5-tuple an ICMP error carries
        return (pkt.get("ip_proto") == 1 and pkt.get("icmpv4_type") in ICMP_ERRORS
                and inner is not None and (zone, tuple(inner)) in self._conns)
