"""Parsing ofproto/trace: only br-int's steps count, not the underlay bridge's that a native
tunnel output nests inside the trace (captured from OVS 3.1, tests/golden)."""
from pathlib import Path

from netvirt.inspect.real_trace import flow_string, parse

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_parse_keeps_br_int_steps_only():
    steps = parse((GOLDEN / "ofproto-trace-flood.txt").read_text())
    assert [(t, p) for t, p, _ in steps] == [(0, 100), (10, 100), (50, 0), (60, 10)]
    assert steps[0][2] == 0xe79e2a60775fc313
    assert [(t, p) for t, p, _ in parse((GOLDEN / "ofproto-trace-flood.txt").read_text(),
                                        "br-phy")] == [(0, 0), (0, 0)]  # one per tunnel


def test_flow_string_puts_the_protocol_first():
    assert flow_string({"in_port": 3, "eth_type": 0x800, "ip_proto": 17, "udp_dst": 53,
                        "ipv4_dst": "10.0.0.2"}) == "udp,in_port=3,udp_dst=53,nw_dst=10.0.0.2"
    assert flow_string({"eth_type": 0x806, "arp_op": 1, "tunnel_id": 1001}) == \
        "arp,arp_op=1,tun_id=0x3e9"
