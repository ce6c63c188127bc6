"""Run inside a VM namespace (`ip netns exec NS python scapy_probe.py ...`).

    sniff IFACE SECONDS        print READY, then after SECONDS a JSON {marker: count}
    send IFACE JSON            send the frames described by JSON: a list of
                               {"eth_src", "eth_dst", "marker", and "ip_src"/"ip_dst" or
                                "arp_op"/"arp_spa"/"arp_tpa"/"arp_sha" or "ethertype";
                                optionally "tags": [[TPID, VID], ...], outermost first}
Markers are payload strings starting with NVPROBE-.
"""
import json
import random
import re
import sys

from scapy.all import ARP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, Raw, fragment, sendp, sniff


def frame(spec):
    eth = Ether(src=spec["eth_src"], dst=spec["eth_dst"])
    for tpid, vid in spec.get("tags", []):
        eth = eth / (Dot1AD(vlan=vid) if tpid == 0x88A8 else Dot1Q(vlan=vid))
    # a fragmented segment: padding ends the first fragment (the TCP header and it), so
    # that the marker is whole in the second
    header = 20 if "tcp" in spec else 8
    pad = b"p" * (spec["fragment"] - header) if spec.get("fragment") else b""
    payload = Raw(load=pad + spec["marker"].encode())
    if "ethertype" in spec:  # a bare frame of that type: the marker is its payload
        if spec.get("tags"):
            eth.lastlayer().type = spec["ethertype"]
        else:
            eth.type = spec["ethertype"]
        return eth / payload
    if "arp_op" in spec:
        return eth / ARP(op=spec["arp_op"], hwsrc=spec["arp_sha"], psrc=spec["arp_spa"],
                         pdst=spec["arp_tpa"]) / payload
    tcp, udp = spec.get("tcp"), spec.get("udp", {})
    l4 = (TCP(sport=tcp.get("sport", 40999), dport=tcp["dport"], flags=tcp["flags"]) if tcp
          else UDP(sport=udp.get("sport", 4000), dport=udp.get("dport", 4000)))
    # an IP id of its own: scapy's default (1 for every packet) would let one datagram's
    # fragments be reassembled with another's
    return eth / IP(src=spec["ip_src"], dst=spec["ip_dst"], id=random.randrange(1, 65536)) / l4 / payload


def frames(spec) -> list:
    f = frame(spec)
    if not spec.get("fragment"):
        return [f]
    return [Ether(src=spec["eth_src"], dst=spec["eth_dst"]) / p
            for p in fragment(f[IP], fragsize=spec["fragment"])]


def main():
    cmd, iface = sys.argv[1], sys.argv[2]
    if cmd == "send":
        sendp([x for s in json.loads(sys.argv[3]) for x in frames(s)], iface=iface, verbose=False)
        return
    counts = {}

    def seen(pkt):
        for m in re.findall(rb"NVPROBE-[A-Za-z0-9-]+", bytes(pkt)):
            counts[m.decode()] = counts.get(m.decode(), 0) + 1

    sniff(iface=iface, prn=seen, store=False, timeout=float(sys.argv[3]),
          started_callback=lambda: print("READY", flush=True))
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
