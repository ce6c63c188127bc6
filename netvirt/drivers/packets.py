"""Packets the controller reads from packet-ins and writes in packet-outs, through os-ken's
packet library (no codec of our own): bytes in, the plain records of nfv/ out, and back."""
from __future__ import annotations

import http.client
import io
from typing import NamedTuple

from os_ken.lib.packet import dhcp as osdhcp
from os_ken.lib.packet import arp, ethernet, icmp, ipv4, packet, tcp, udp

from netvirt.nfv import dhcp
from netvirt.pipeline.layout import DHCP_CLIENT_PORT, DHCP_SERVER_PORT


def _parsed(data: bytes):
    try:
        return packet.Packet(data)
    except Exception:  # os-ken's parsers raise whatever struct and its own code raise
        return None


def _option(opts, tag: int):
    for o in opts.option_list if opts else ():
        if o.tag == tag:
            return o.value
    return None


def dhcp_request(data: bytes) -> dhcp.Request | None:
    """The DHCP request in an Ethernet frame; None for anything else or a malformed one."""
    pkt = _parsed(data)
    if pkt is None:
        return None
    msg = pkt.get_protocol(osdhcp.dhcp)
    u = pkt.get_protocol(udp.udp)
    if msg is None or u is None or u.dst_port != DHCP_SERVER_PORT:
        return None
    kind = _option(msg.options, osdhcp.DHCP_MESSAGE_TYPE_OPT)
    requested = _option(msg.options, osdhcp.DHCP_REQUESTED_IP_ADDR_OPT)
    if not kind or msg.op != osdhcp.DHCP_BOOT_REQUEST:
        return None
    return dhcp.Request(kind[0], msg.xid, msg.chaddr, msg.ciaddr,
                        ".".join(str(b) for b in requested) if requested and len(requested) == 4
                        else None, msg.flags)


def _value(tag: int, value) -> bytes:
    if isinstance(value, str):  # an IPv4 address
        return bytes(int(x) for x in value.split("."))
    width = {53: 1, 26: 2}.get(tag, 4)
    return value.to_bytes(width, "big")


def dhcp_answer(a: dhcp.Answer) -> bytes:
    opts = osdhcp.options(option_list=[osdhcp.option(tag, _value(tag, v)) for tag, v in a.options])
    msg = osdhcp.dhcp(op=osdhcp.DHCP_BOOT_REPLY, chaddr=a.client_mac, options=opts, hlen=6,
                      xid=a.xid, flags=a.flags, yiaddr=a.yiaddr, siaddr=a.server_ip)
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=a.client_mac, src=a.server_mac, ethertype=0x0800))
    pkt.add_protocol(ipv4.ipv4(src=a.server_ip, dst=a.dst_ip, proto=17, ttl=64))
    pkt.add_protocol(udp.udp(src_port=DHCP_SERVER_PORT, dst_port=DHCP_CLIENT_PORT))
    pkt.add_protocol(msg)
    pkt.serialize()
    return bytes(pkt.data)


def time_exceeded(data: bytes, src_mac: str, src_ip: str) -> bytes | None:
    """ICMP time exceeded (in transit) from ``src_ip``/``src_mac`` about the IPv4 packet in
    frame ``data``, back to its sender; None for anything that is not such a packet, or
    is an ICMP error itself (none is sent about one, RFC 1812)."""
    pkt = _parsed(data)
    if pkt is None:
        return None
    eth, ip = pkt.get_protocol(ethernet.ethernet), pkt.get_protocol(ipv4.ipv4)
    if eth is None or ip is None:
        return None
    inner = pkt.get_protocol(icmp.icmp)
    if inner is not None and inner.type not in (icmp.ICMP_ECHO_REQUEST, icmp.ICMP_ECHO_REPLY):
        return None
    start = len(eth)  # the IP header and the first 8 bytes of its payload (RFC 792)
    quoted = data[start:start + ip.header_length * 4 + 8]
    out = packet.Packet()
    out.add_protocol(ethernet.ethernet(dst=eth.src, src=src_mac, ethertype=0x0800))
    out.add_protocol(ipv4.ipv4(src=src_ip, dst=ip.src, proto=1, ttl=64))
    out.add_protocol(icmp.icmp(type_=icmp.ICMP_TIME_EXCEEDED, code=0,
                               data=icmp.TimeExceeded(data=quoted)))
    out.serialize()
    return bytes(out.data)


def arp_sender(data: bytes) -> tuple[str, str] | None:
    """(sender IP, sender MAC) of an ARP reply in frame ``data``; None for anything else."""
    pkt = _parsed(data)
    a = pkt.get_protocol(arp.arp) if pkt else None
    if a is None or a.opcode != arp.ARP_REPLY:
        return None
    return a.src_ip, a.src_mac.lower()


def ipv4_addresses(data: bytes) -> tuple[str, str] | None:
    """(source, destination) of the IPv4 packet in frame ``data``; None for anything else."""
    pkt = _parsed(data)
    ip = pkt.get_protocol(ipv4.ipv4) if pkt else None
    return (ip.src, ip.dst) if ip else None


def connection(data: bytes) -> str | None:
    """The IPv4 packet in frame ``data`` as an operator reads it: 'tcp 10.0.0.4:40999 ->
    10.0.0.3:5432', 'icmp 10.0.0.4 -> 10.0.0.3 type 8'; None for anything else."""
    pkt = _parsed(data)
    ip = pkt.get_protocol(ipv4.ipv4) if pkt else None
    if ip is None:
        return None
    for proto, name in ((tcp.tcp, "tcp"), (udp.udp, "udp")):
        l4 = pkt.get_protocol(proto)
        if l4 is not None:
            return f"{name} {ip.src}:{l4.src_port} -> {ip.dst}:{l4.dst_port}"
    ic = pkt.get_protocol(icmp.icmp)
    if ic is not None:
        return f"icmp {ip.src} -> {ip.dst} type {ic.type}"
    return f"ip proto {ip.proto} {ip.src} -> {ip.dst}"


def arp_request(src_mac: str, src_ip: str, target_ip: str) -> bytes:
    """A broadcast ARP request for ``target_ip`` from ``src_ip``/``src_mac``."""
    out = packet.Packet()
    out.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=0x0806))
    out.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src_mac, src_ip=src_ip,
                             dst_mac="00:00:00:00:00:00", dst_ip=target_ip))
    out.serialize()
    return bytes(out.data)


# TCP flag bits, as the packet library names them (for callers that must not import it)
FIN, SYN, RST, PSH, ACK = tcp.TCP_FIN, tcp.TCP_SYN, tcp.TCP_RST, tcp.TCP_PSH, tcp.TCP_ACK


def seq_add(seq: int, n: int) -> int:
    """TCP sequence arithmetic: ``seq`` + ``n`` modulo 2**32."""
    return (seq + n) & 0xFFFFFFFF


def tcp_segment(src_mac: str, src_ip: str, sport: int, dst_mac: str, dst_ip: str, dport: int,
                flags: int, seq: int, ack: int = 0, payload: bytes = b"") -> bytes:
    """A TCP segment: a health check's SYN, its HTTP request, or the RST that ends it."""
    out = packet.Packet()
    out.add_protocol(ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=0x0800))
    out.add_protocol(ipv4.ipv4(src=src_ip, dst=dst_ip, proto=6, ttl=64))
    out.add_protocol(tcp.tcp(src_port=sport, dst_port=dport, seq=seq, ack=ack, bits=flags,
                             window_size=1024))
    if payload:
        out.add_protocol(payload)
    out.serialize()
    return bytes(out.data)


class Segment(NamedTuple):
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    src_mac: str
    dst_mac: str
    payload: bytes


def tcp_of(data: bytes) -> Segment | None:
    """The TCP segment in frame ``data``; None for anything else."""
    pkt = _parsed(data)
    if pkt is None:
        return None
    eth, ip, t = (pkt.get_protocol(ethernet.ethernet), pkt.get_protocol(ipv4.ipv4),
                  pkt.get_protocol(tcp.tcp))
    if eth is None or ip is None or t is None:
        return None
    rest = pkt.protocols[-1]
    payload = bytes(rest[:ip.total_length - ip.header_length * 4 - t.offset * 4]) \
        if isinstance(rest, (bytes, bytearray)) else b""  # without the Ethernet padding
    return Segment(ip.src, t.src_port, ip.dst, t.dst_port, t.bits, t.seq, t.ack, eth.src,
                   eth.dst, payload)


def http_status(payload: bytes) -> int | None:
    """The status code of the HTTP response that starts ``payload`` (the first segment of
    the answer is enough: the status line comes first); None if it is not one."""
    response = http.client.HTTPResponse(_Received(payload))
    try:
        response.begin()
    except (http.client.HTTPException, ValueError):
        return None
    return response.status


class _Received:
    """Bytes already received, as the socket http.client reads a response from."""

    def __init__(self, data: bytes):
        self._data = data

    def makefile(self, mode):
        return io.BytesIO(self._data)


def tcp_reset(data: bytes) -> bytes | None:
    """The RST+ACK that refuses the TCP segment in frame ``data``, from its destination back
    to its sender; None for anything else, or a reset itself."""
    seg = tcp_of(data)
    if seg is None or seg.flags & RST:
        return None
    return tcp_segment(seg.dst_mac, seg.dst, seg.dport, seg.src_mac, seg.src, seg.sport,
                       RST | ACK, 0, seq_add(seg.seq, 1))
