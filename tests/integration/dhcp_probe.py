"""Run inside a VM namespace (`ip netns exec NS python dhcp_probe.py ...`).

    discover IFACE MAC             one DHCP discover; print the offer as JSON (or {})
    flood IFACE MAC SECONDS        discovers as fast as scapy sends them for SECONDS; print
                                   {"sent": N, "offers": M}
"""
import json
import sys
import time

from scapy.all import BOOTP, DHCP, IP, UDP, AsyncSniffer, Ether, conf


def discover(mac: str, xid: int) -> Ether:
    return (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=xid)
            / DHCP(options=[("message-type", "discover"), "end"]))


def offers(iface: str) -> AsyncSniffer:
    s = AsyncSniffer(iface=iface, filter="udp and src port 67 and dst port 68", store=True)
    s.start()
    time.sleep(0.5)  # the sniffer is listening before anything is sent
    return s


def main():
    cmd, iface, mac = sys.argv[1:4]
    sniffer = offers(iface)
    sock = conf.L2socket(iface=iface)
    if cmd == "discover":
        sock.send(discover(mac, 0x4242))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not sniffer.results:
            time.sleep(0.05)
        found = sniffer.stop()
        if not found:
            print("{}")
            return
        reply = found[0]
        opts = {o[0]: o[1] for o in reply[DHCP].options if isinstance(o, tuple)}
        print(json.dumps({"yiaddr": reply[BOOTP].yiaddr, "xid": reply[BOOTP].xid,
                          "router": opts.get("router"), "mtu": opts.get("interface-mtu"),
                          "type": opts.get("message-type"), "server_mac": reply[Ether].src}))
        return
    frame = bytes(discover(mac, 0x4343))
    sent, end = 0, time.monotonic() + float(sys.argv[4])
    while time.monotonic() < end:
        sock.send(frame)
        sent += 1
    time.sleep(0.5)
    print(json.dumps({"sent": sent, "offers": len(sniffer.stop())}))


if __name__ == "__main__":
    main()
