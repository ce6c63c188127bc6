"""Packets the controller reads from packet-ins and writes in packet-outs, through os-ken's
packet library (no codec of our own): bytes in, the plain records of nfv/ out, and back."""
from __future__ import annotations

from os_ken.lib.packet import dhcp as osdhcp
from os_ken.lib.packet import ethernet, ipv4, packet, udp

from netvirt.nfv import dhcp
from netvirt.pipeline.layout import DHCP_CLIENT_PORT, DHCP_SERVER_PORT


def _option(opts, tag: int):
    for o in opts.option_list if opts else ():
        if o.tag == tag:
            return o.value
    return None


def dhcp_request(data: bytes) -> dhcp.Request | None:
    """The DHCP request in an Ethernet frame; None for anything else or a malformed one."""
    try:
        pkt = packet.Packet(data)
    except Exception:  # os-ken's parsers raise whatever struct and its own code raise
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
