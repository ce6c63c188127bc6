"""The stateful firewall on real switches: a tenant "green" added to the session's lab
(web servers g1 on hv1 and g2 on hv2, a database g3 on hv1, an unfirewalled client g4 on
hv3), the rules of examples/firewalled.yaml, and real TCP, UDP and ICMP between them."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netvirt.cli import main
from netvirt.config import load_file
from netvirt.host.reach import matrix

from .frames import receivers

PROBE = str(Path(__file__).with_name("fw_probe.py"))
IP = {"g1": "10.5.0.1", "g2": "10.5.0.2", "g3": "10.5.0.3", "g4": "10.5.0.4"}
MAC = {n: f"02:00:00:00:0e:0{n[1]}" for n in IP}
SERVERS = [("g1", "tcp", 80), ("g2", "tcp", 80), ("g3", "tcp", 5432), ("g1", "udp", 53),
           ("g3", "udp", 53), ("g4", "tcp", 80)]


def _green(d: dict) -> None:
    def port(name, hv, groups=None):
        p = {"name": name, "network": "lan", "hypervisor": hv, "ips": [IP[name]],
             "mac": MAC[name]}
        if groups is not None:
            p["security_groups"] = groups
        return p

    d["tenants"].append({
        "name": "green", "firewall": {"ingress": "deny", "egress": "deny"},
        "networks": [{"name": "lan", "vni": 5010, "subnets": [{"cidr": "10.5.0.0/24"}]}],
        "security_groups": [
            {"name": "web", "rules": [
                {"direction": "ingress", "protocol": "tcp", "ports": 80},
                {"direction": "ingress", "protocol": "udp", "ports": 53},
                {"direction": "ingress", "protocol": "icmp", "icmp_type": 8, "remote_group": "web"},
                {"direction": "egress", "protocol": "icmp", "icmp_type": 8, "remote_group": "web"},
                {"direction": "egress", "protocol": "tcp", "ports": 5432, "remote_group": "db"}]},
            {"name": "db", "rules": [
                {"direction": "ingress", "protocol": "tcp", "ports": 5432, "remote_group": "web"}]},
        ],
        "ports": [port("g1", "hv1", ["web"]), port("g2", "hv2", ["web"]),
                  port("g3", "hv1", ["db"]), port("g4", "hv3")]})


class Green:
    def __init__(self, env):
        self.env = env
        self.api = env.client.base.removeprefix("http://")
        self.data = copy.deepcopy(env.data)
        _green(self.data)
        self.servers: list[subprocess.Popen] = []

    def apply(self, data: dict, name: str) -> None:
        f = self.env.write(data, name)
        self.env.lab.up(load_file(f))
        assert main(["apply", str(f), "--api", self.api]) == 0
        self.env.wait_in_sync(20, revision=self.env.client.status()["revision"])

    def serve(self) -> None:
        for vm, proto, port in SERVERS:
            p = subprocess.Popen(self.env.lab.exec_argv(f"green/{vm}", [
                sys.executable, PROBE, "serve", proto, IP[vm], str(port)]),
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            self.servers.append(p)
            assert p.stdout.readline().strip() == "READY", (vm, proto, port)

    def stop(self) -> None:
        for p in self.servers:
            p.kill()
            p.wait()

    def connect(self, src: str, dst: str, proto: str, port: int) -> bool:
        r = self.env.run(f"green/{src}", sys.executable, PROBE, "connect", proto, IP[dst],
                         str(port))
        return r.returncode == 0

    def session(self, src: str, dst: str, port: int) -> subprocess.Popen:
        p = subprocess.Popen(self.env.lab.exec_argv(f"green/{src}", [
            sys.executable, PROBE, "session", IP[dst], str(port)]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "CONNECTED", (src, dst, port)
        return p


def _say(p: subprocess.Popen, word: str) -> str:
    p.stdin.write(word + "\n")
    p.stdin.flush()
    return p.stdout.readline().strip()


@pytest.fixture(scope="module")
def green(env):
    g = Green(env)
    g.apply(g.data, "green.yaml")
    g.serve()
    yield g
    g.stop()
    env.lab.up(load_file(env.base_file))
    assert main(["apply", str(env.base_file), "--api", g.api]) == 0
    env.wait_in_sync(20, revision=env.client.status()["revision"])


# (source, destination, protocol, port) -> allowed?
MATRIX = {
    ("g4", "g1", "tcp", 80): True,  # web: 80 from anywhere; the client is not firewalled
    ("g4", "g2", "tcp", 80): True,
    ("g4", "g1", "udp", 53): True,
    ("g4", "g3", "tcp", 5432): False,  # db: 5432 from web only
    ("g4", "g3", "udp", 53): False,
    ("g1", "g3", "tcp", 5432): True,  # one hypervisor: the sender's and receiver's rules
    ("g2", "g3", "tcp", 5432): True,  # across hypervisors
    ("g3", "g1", "tcp", 80): False,  # db may start nothing (egress deny)
    ("g1", "g2", "tcp", 80): False,  # web may start only 5432 to db and pings
    ("g1", "g4", "tcp", 80): False,
    ("g2", "g1", "udp", 53): False,
}


def test_an_allow_deny_matrix_of_tcp_and_udp_across_hypervisors_and_within_one(green):
    got = {k: green.connect(*k) for k in MATRIX}
    wrong = {k: v for k, v in got.items() if v != MATRIX[k]}
    assert not wrong, wrong
    # the drop log, in the controller's log: g4's SYN to g3:5432, denied where g3 is
    log = (green.env.tmp / "controller.log").read_text()
    assert re.search(r"netvirt.firewall: denied on hv1: green/g3 receives tcp "
                     r"10\.5\.0\.4:\d+ -> 10\.5\.0\.3:5432: no rule of its security groups "
                     r"\(db\) allows it", log), log[-2000:]


def test_pings_are_what_the_groups_allow_and_the_lab_matrix_agrees(green):
    assert green.env.ping("green/g1", IP["g2"])  # web <-> web
    assert not green.env.ping("green/g4", IP["g1"], count=1)  # from outside the group
    assert not green.env.ping("green/g3", IP["g1"], count=1)  # db may not start it
    cfg = load_file(green.env.base_file.with_name("green.yaml")).config
    m = matrix(green.env.lab, cfg)
    wrong = {k: v for k, v in m.reached.items() if v != m.expected(*k)}
    assert m.as_expected, wrong
    assert m.reached[("green", "g1"), ("green", "g2")]
    assert not m.reached[("green", "g4"), ("green", "g3")]


G4_TO = {"eth_src": MAC["g4"], "ip_src": IP["g4"]}
CRAFTED = {
    # marker: (frame from g4, VMs that may receive it)
    "NVPROBE-syn-to-web": ({**G4_TO, "eth_dst": MAC["g1"], "ip_dst": IP["g1"],
                            "tcp": {"dport": 80, "flags": "S"}}, {"green/g1"}),  # the control
    "NVPROBE-syn-to-db": ({**G4_TO, "eth_dst": MAC["g3"], "ip_dst": IP["g3"],
                           "tcp": {"dport": 5432, "flags": "S"}}, set()),
    # a segment of no connection: OVS picks a connection up from a bare ACK (judged as new:
    # web takes 80, db does not take 80) and refuses a SYN+ACK (half open: invalid)
    "NVPROBE-ack-to-web": ({**G4_TO, "eth_dst": MAC["g1"], "ip_dst": IP["g1"],
                            "tcp": {"dport": 80, "flags": "A", "sport": 41001}}, {"green/g1"}),
    "NVPROBE-ack-to-db": ({**G4_TO, "eth_dst": MAC["g3"], "ip_dst": IP["g3"],
                           "tcp": {"dport": 80, "flags": "A", "sport": 41004}}, set()),
    "NVPROBE-synack-to-db": ({**G4_TO, "eth_dst": MAC["g3"], "ip_dst": IP["g3"],
                              "tcp": {"dport": 5432, "flags": "SA", "sport": 41002}}, set()),
    # fragments, the first with the ports, the second with the marker.  The control: a
    # datagram web allows (udp 53) opens the connection, and a fragmented one of it passes
    # (conntrack reassembles to judge it; the live connection carries both fragments)
    "NVPROBE-dns-to-web": ({**G4_TO, "eth_dst": MAC["g1"], "ip_dst": IP["g1"],
                            "udp": {"sport": 41053, "dport": 53}}, {"green/g1"}),
    "NVPROBE-dns-frag-to-web": ({**G4_TO, "eth_dst": MAC["g1"], "ip_dst": IP["g1"],
                                 "udp": {"sport": 41053, "dport": 53}, "fragment": 1248},
                                {"green/g1"}),
    "NVPROBE-frag-to-db": ({**G4_TO, "eth_dst": MAC["g3"], "ip_dst": IP["g3"],
                            "tcp": {"dport": 5432, "flags": "S", "sport": 41003},
                            "fragment": 1248}, set()),
    # a first fragment under 1200 bytes drops, allowed or not (OVS's min v4 frag size)
    "NVPROBE-tiny-frag-to-web": ({**G4_TO, "eth_dst": MAC["g1"], "ip_dst": IP["g1"],
                                  "udp": {"sport": 41053, "dport": 53}, "fragment": 24}, set()),
    # spoofed sources: another port's MAC or IP (port security), an ARP claiming g3's IP
    "NVPROBE-spoof-ip": ({**G4_TO, "ip_src": IP["g1"], "eth_dst": MAC["g3"], "ip_dst": IP["g3"],
                          "tcp": {"dport": 5432, "flags": "S"}}, set()),
    "NVPROBE-spoof-mac": ({**G4_TO, "eth_src": MAC["g1"], "eth_dst": MAC["g3"],
                           "ip_dst": IP["g3"], "tcp": {"dport": 5432, "flags": "S"}}, set()),
    "NVPROBE-garp": ({"eth_src": MAC["g4"], "eth_dst": "ff:ff:ff:ff:ff:ff", "arp_op": 2,
                      "arp_sha": MAC["g4"], "arp_spa": IP["g3"], "arp_tpa": IP["g3"]}, set()),
    "NVPROBE-tagged": ({**G4_TO, "eth_dst": MAC["g1"], "ip_dst": IP["g1"],
                        "tcp": {"dport": 80, "flags": "S"}, "tags": [[0x8100, 5]]}, set()),
}


def test_crafted_frames_from_a_vm_get_nothing_through(green):
    # open the DNS connection first: its fragmented datagram must not race the commit of
    # the datagram that opens it (the switch judges a batch of packets at once)
    opener = {**CRAFTED["NVPROBE-dns-to-web"][0], "marker": "NVPROBE-open"}
    green.env.run("green/g4", sys.executable, str(Path(__file__).with_name("scapy_probe.py")),
                  "send", "eth0", json.dumps([opener]), check=True)
    frames = [{**spec, "marker": m} for m, (spec, _) in CRAFTED.items()]
    seen = receivers(green.env, "green/g4", frames, ["green/g1", "green/g2", "green/g3"],
                     copies=2)
    wrong = {m: sorted(seen[m]) for m, (_, allowed) in CRAFTED.items() if seen[m] != allowed}
    assert not wrong, wrong


def test_removing_a_rule_cuts_its_established_connections_and_no_other(green):
    db = green.session("g1", "g3", 5432)
    web = green.session("g4", "g1", 80)
    try:
        assert _say(db, "one") == "one" and _say(web, "one") == "one"
        data = copy.deepcopy(green.data)
        data["tenants"][-1]["security_groups"][1]["rules"] = []  # db: nothing in
        green.apply(data, "green-no-db.yaml")
        assert _say(db, "two").startswith("FAIL")  # cut, mid-connection
        assert _say(web, "two") == "two"  # another rule's connection goes on
        assert not green.connect("g1", "g3", "tcp", 5432)
    finally:
        db.kill(), web.kill()
        green.apply(green.data, "green.yaml")
    assert green.connect("g1", "g3", "tcp", 5432)


def test_a_remote_group_rule_follows_a_port_into_and_out_of_the_group(green):
    assert not green.connect("g4", "g3", "tcp", 5432)
    data = copy.deepcopy(green.data)
    data["tenants"][-1]["ports"][3]["security_groups"] = ["web"]  # g4 joins web
    try:
        green.apply(data, "green-g4-web.yaml")
        assert green.connect("g4", "g3", "tcp", 5432)
    finally:
        green.apply(green.data, "green.yaml")  # and leaves it
    assert not green.connect("g4", "g3", "tcp", 5432)
