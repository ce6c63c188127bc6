"""`netvirt lab matrix` judges isolation right in both directions (issue 18, item 9): a
tenant's network without a router is reached from none of its other networks, two
networks of one router reach each other, and a MAC repeated in another tenant (which
validation allows) is not taken for a reply across tenants."""
from __future__ import annotations

from netvirt.cli import main
from netvirt.config import load_file
from netvirt.host.reach import matrix, render_matrix


def _twin_mac_and_a_second_network(d):
    blue, red = d["tenants"]
    red["ports"][0]["mac"] = blue["ports"][0]["mac"]  # r1 = b1: 10.0.0.1, same MAC, hv1
    blue["networks"].append({"name": "lan", "vni": 5009,
                             "subnets": [{"cidr": "10.2.0.0/24"}]})  # without a router
    blue["ports"].append({"name": "b6", "network": "lan", "hypervisor": "hv2",
                          "ips": ["10.2.0.1"], "mac": "02:00:00:00:0b:06"})


def test_the_matrix_is_right_about_a_second_network_and_a_twin_mac(env):
    variant = env.variant("twin.yaml", _twin_mac_and_a_second_network)
    lc, api = load_file(variant), env.client.base.removeprefix("http://")
    try:
        env.lab.up(lc)
        assert main(["apply", str(variant), "--api", api]) == 0
        env.wait_in_sync(20, revision=env.client.status()["revision"])
        m = matrix(env.lab, lc.config)
        wrong = {k: v for k, v in m.reached.items() if v != m.expected(*k)}
        assert m.as_expected, wrong
        assert not any(v for (s, d), v in m.reached.items() if s[0] != d[0])
        assert not any(m.reached[("blue", "b6"), d] or m.reached[d, ("blue", "b6")]
                       for d in m.ports if d != ("blue", "b6"))
        assert m.reached[("blue", "b2"), ("blue", "b1")] and \
            m.reached[("red", "r2"), ("red", "r1")]
        assert m.reached[("blue", "b1"), ("blue", "b7")] and \
            m.reached[("red", "r7"), ("red", "r1")]  # routed
        assert "across tenants: 0 reached; as expected" in render_matrix(m)
    finally:
        env.lab.up(load_file(env.base_file))
        assert main(["apply", str(env.base_file), "--api", api]) == 0
    env.wait_in_sync(20, revision=env.client.status()["revision"])
