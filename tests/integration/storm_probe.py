"""Run inside a VM namespace: send one frame as fast as a raw socket takes it.

    IFACE SRC_MAC DST_MAC SRC_IP MARKER SECONDS    prints {"sent": N}

The frame is a UDP datagram from the VM's own MAC and address (port security lets it
through) to a MAC nobody has: unknown unicast, which the network floods."""
import json
import socket
import sys
import time

from scapy.all import IP, UDP, Ether, Raw


def main():
    iface, src_mac, dst_mac, src_ip, marker, seconds = sys.argv[1:7]
    frame = bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst="10.0.0.250")
                  / UDP(sport=4000, dport=4000) / Raw(load=marker.encode()))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    sent, end = 0, time.monotonic() + float(seconds)
    while time.monotonic() < end:
        for _ in range(100):
            try:
                s.send(frame)
                sent += 1
            except BlockingIOError:
                pass
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    main()
