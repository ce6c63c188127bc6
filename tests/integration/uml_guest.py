"""Run inside User-mode Linux (test_uml_netem.py boots it): a real kernel with sch_netem.

netvirt's own node-side QoS code (host/qos.py's pass, host/tc.py's netlink) puts a policy
on a veth whose peer is in a namespace of its own, as a VM's device and its guest; then
this measures what the kernel does with it and prints one JSON line per measurement.  The
policy reaches the pass as the node reads it from OVSDB (a JSON word): there is no OVSDB in
the guest, so that word is given directly (netvirt.testing's FakeNodeOvsdb).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

from netvirt.host import kernel
from netvirt.host.qos import QosPass
from netvirt.host.tc import KernelTc
from netvirt.testing.fakes import FakeNodeOvsdb
from netvirt.topology.qos import ToVm, encode_specs

DEV, PEER, NS, HOST_IP, GUEST_IP = "vx0", "vx1", "guest", "10.9.0.1", "10.9.0.2"


def sh(*argv: str, ns: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def setup() -> None:
    sh("ip", "link", "add", DEV, "type", "veth", "peer", "name", PEER)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "set", PEER, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", DEV)
    sh("ip", "link", "set", DEV, "up")
    sh("ip", "addr", "add", f"{GUEST_IP}/24", "dev", PEER, ns=NS)
    sh("ip", "link", "set", PEER, "up", ns=NS)
    sh("ip", "link", "set", "lo", "up", ns=NS)


def apply(node: QosPass, spec: ToVm | None) -> list[str]:
    node.ovsdb.specs = encode_specs({DEV: spec} if spec else {})
    return node.run(kernel.ifindexes([DEV]), netem_ok=True)


def ping(count: int, interval: str) -> dict:
    out = subprocess.run(["ping", "-n", "-q", "-c", str(count), "-i", interval, "-W", "2",
                          GUEST_IP], capture_output=True, text=True).stdout
    sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    return {"sent": sent, "received": got,
            "avg_ms": float(m[2]) if m else None, "mdev_ms": float(m[4]) if m else None}


def iperf(seconds: int = 4) -> float:
    """TCP from this side into the guest (the device's egress: the policy's direction), in
    Mbit/s on the wire, after the first second."""
    server = subprocess.Popen(["ip", "netns", "exec", NS, "iperf3", "-s", "-1", "-B", GUEST_IP],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = subprocess.run(["iperf3", "-c", GUEST_IP, "-t", str(seconds), "-O", "1", "-J"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
        out = json.loads(r.stdout)
    finally:
        server.kill()
        server.wait()
    mss = 1500 - 52  # the veth's MTU: Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12
    return out["end"]["sum_received"]["bits_per_second"] * (mss + 66) / mss / 1e6


def report(what: str, **values) -> None:
    print(json.dumps({"what": what, **values}), flush=True)


def main() -> int:
    setup()
    report("qdiscs", found=kernel.probe_qdiscs())
    node = QosPass(FakeNodeOvsdb(), KernelTc())
    origin = "tenant/t/port/p"
    delay = ToVm(origin, latency=50_000, jitter=10_000)
    report("apply", ops=apply(node, delay), again=apply(node, delay),
           tc=sh("tc", "qdisc", "show", "dev", DEV))
    report("delay", **ping(300, "0.02"))
    lossy = ToVm(origin, loss=5.0)
    report("apply", ops=apply(node, lossy), tc=sh("tc", "qdisc", "show", "dev", DEV))
    report("loss", **ping(2000, "0.002"))
    both = ToVm(origin, rate=10_000_000, burst=12_500, latency=50_000)
    report("apply", ops=apply(node, both), again=apply(node, both),
           tc=sh("tc", "qdisc", "show", "dev", DEV))
    report("rate", mbps=iperf(), **ping(50, "0.05"))
    report("apply", ops=apply(node, None), tc=sh("tc", "qdisc", "show", "dev", DEV))
    report("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
