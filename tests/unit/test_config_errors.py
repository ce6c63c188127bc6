"""Loader errors: every problem is reported, each with FILE:LINE:COL and its YAML path."""
import textwrap

import pytest

from netvirt.config import load_text
from netvirt.errors import ConfigError

BASE = """\
hypervisors:
  - name: hv1
    underlay_ip: 192.168.50.1/24
    ovsdb: unix:/run/hv1/db.sock
  - name: hv2
    underlay_ip: 192.168.50.2/24
    ovsdb: unix:/run/hv2/db.sock
tenants:
  - name: blue
    networks:
      - name: web
        vni: 100
        subnets:
          - cidr: 10.0.0.0/24
            gateway: 10.0.0.254
    ports:
      - name: web1
        network: web
        hypervisor: hv1
        ips: [10.0.0.1]
        mac: "02:00:00:00:00:01"
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_text(textwrap.dedent(text), "t.yaml")
    return [str(d) for d in e.value.diagnostics]


def one_error(text: str) -> str:
    errs = errors(text)
    assert len(errs) == 1, errs
    return errs[0]


def test_base_is_valid():
    lc = load_text(BASE, "t.yaml")
    assert lc.config.tenants[0].ports[0].ips[0].compressed == "10.0.0.1"
    assert str(lc.location("tenant/blue/port/web1")) == "t.yaml:17:9"


def test_yaml_syntax_error_has_location():
    assert one_error("hypervisors:\n  - name: [hv1\n") .startswith("t.yaml:3:1: YAML syntax:")


def test_duplicate_key_points_at_second_occurrence():
    e = one_error(BASE.replace("    ovsdb: unix:/run/hv1/db.sock\n",
                               "    ovsdb: unix:/run/hv1/db.sock\n    ovsdb: unix:/x/db.sock\n"))
    assert e.startswith("t.yaml:5:5: hypervisors[0].ovsdb: duplicate key 'ovsdb' (first defined at line 4)")


def test_unknown_key_is_an_error_at_the_key():
    e = one_error(BASE.replace("        vni: 100\n", "        vni: 100\n        vnii: 7\n"))
    assert e.startswith("t.yaml:13:9: tenants[0].networks[0].vnii: unknown key 'vnii'")


def test_missing_key_names_the_parent():
    e = one_error(BASE.replace("        hypervisor: hv1\n", ""))
    assert e.startswith("t.yaml:17:9: tenants[0].ports[0].hypervisor: missing required key")


def test_bad_values_are_located():
    errs = errors(BASE.replace("192.168.50.1/24", "192.168.50.300/24")
                  .replace('"02:00:00:00:00:01"', '"03:00:00:00:00:01"'))
    assert any(e.startswith("t.yaml:3:18: hypervisors[0].underlay_ip:") for e in errs)
    assert any("t.yaml:21:14: tenants[0].ports[0].mac: MAC must be unicast" in e for e in errs)


@pytest.mark.parametrize("change, expected", [
    (("  - name: hv2\n", "  - name: hv1\n"),
     "t.yaml:5:11: hypervisors[1].name: duplicate hypervisor name 'hv1'"),
    (("        hypervisor: hv1\n", "        hypervisor: hv9\n"),
     "t.yaml:19:21: tenants[0].ports[0].hypervisor: hypervisor 'hv9' is not defined"),
    (("        network: web\n", "        network: db\n"),
     "t.yaml:18:18: tenants[0].ports[0].network: network 'db' is not defined in tenant 'blue'"),
    (("ips: [10.0.0.1]", "ips: [10.0.1.1]"),
     "t.yaml:20:15: tenants[0].ports[0].ips[0]: IP 10.0.1.1 is outside network 'web'"),
    (("ips: [10.0.0.1]", "ips: [10.0.0.254]"),
     "t.yaml:20:15: tenants[0].ports[0].ips[0]: IP 10.0.0.254 is the gateway"),
    (("gateway: 10.0.0.254", "gateway: 10.9.0.254"),
     "t.yaml:15:22: tenants[0].networks[0].subnets[0].gateway: gateway 10.9.0.254 is outside subnet"),
    (("underlay_ip: 192.168.50.2/24", "underlay_ip: 192.168.50.1/24"),
     "t.yaml:6:18: hypervisors[1].underlay_ip: underlay IP 192.168.50.1 is also used"),
])
def test_semantic_checks(change, expected):
    assert one_error(BASE.replace(*change)).startswith(expected)


SECOND_PORT = """\
      - name: web2
        network: web
        hypervisor: hv2
        ips: [10.0.0.1]
        mac: "02:00:00:00:00:01"
"""


def test_duplicate_ip_and_mac_in_a_network_are_both_reported():
    errs = errors(BASE + SECOND_PORT)
    assert errs == [
        "t.yaml:25:15: tenants[0].ports[1].ips[0]: IP 10.0.0.1 is already used by port 'web1' in network 'web'",
        "t.yaml:26:14: tenants[0].ports[1].mac: MAC 02:00:00:00:00:01 is already used by port 'web1' in network 'web'",
    ]


def test_duplicate_port_name():
    e = errors(BASE + SECOND_PORT.replace("web2", "web1").replace("10.0.0.1]", "10.0.0.2]")
               .replace(":01\"", ":02\""))
    assert e == ["t.yaml:22:15: tenants[0].ports[1].name: duplicate port name 'web1' (also port #1); rename one"]


TWO_TENANTS = BASE + """\
  - name: red
    networks:
      - name: app
        vni: 100
        subnets: [{cidr: 10.0.0.0/24}]
      - name: db
        subnets: [{cidr: 10.0.0.128/25}]
"""


def test_vni_collision_and_overlap_inside_a_tenant_all_reported():
    errs = errors(TWO_TENANTS)
    assert errs == [
        "t.yaml:25:14: tenants[1].networks[0].vni: VNI 100 is already used by network blue/web; VNIs are global, pick another",
        "t.yaml:28:26: tenants[1].networks[1].subnets[0].cidr: subnet 10.0.0.128/25 overlaps 10.0.0.0/24 of network 'app' in tenant 'red'; subnets inside one tenant must not overlap",
    ]


def test_overlapping_subnets_across_tenants_are_fine():
    lc = load_text(TWO_TENANTS.replace("vni: 100\n        subnets: [{cidr: 10.0.0.0/24}]",
                                       "vni: 200\n        subnets: [{cidr: 10.0.0.0/24}]")
                   .replace("10.0.0.128/25", "10.1.0.0/24"), "t.yaml")
    assert [n.vni for n in lc.config.tenants[1].networks][0] == 200


@pytest.mark.parametrize("text, expected", [
    ("a: &x [1]\nb: *x\n", "t.yaml:1:4: b: aliases are not allowed"),
    ("hypervisors: !!python/object/apply:os.system [echo hi]\n", "is not allowed; remove it"),
    ("- 1\n- 2\n", "the top level must be a mapping"),
])
def test_unsafe_or_odd_yaml_is_refused(text, expected):
    assert expected in one_error(text)


def test_billion_laughs_is_refused_without_expanding():
    lol = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20))
    errs = errors(lol)  # every alias is reported, none is expanded
    assert len(errs) == 80 and all("aliases are not allowed" in e for e in errs)


def test_cli_exit_codes(tmp_path, capsys):
    from netvirt.cli import main

    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("vni: 100", "vni: 0"))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:12:14: tenants[0].networks[0].vni:" in err and "nothing was applied" in err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2


def test_unquoted_mac_gets_a_hint():
    e = one_error(BASE.replace('mac: "02:00:00:00:00:01"', "mac: 12:00:00:00:00:01"))  # base 60!
    assert e.startswith("t.yaml:21:14: tenants[0].ports[0].mac: quote MAC addresses")


# -- a config that replaces another ---------------------------------------------------

def test_unchanged_tenants_are_not_validated_again_and_the_result_is_the_same():
    import copy

    from netvirt.testing import gen

    data = gen.config(100, 3)  # tenants of 5 networks, explicit VNIs, MACs and interfaces
    first = load_text(gen.text(data), "a.yaml")
    changed = copy.deepcopy(data)
    changed["tenants"][0]["ports"][0]["ips"] = ["10.0.0.240"]
    second = load_text(gen.text(changed), "b.yaml", previous=first)
    assert second.config == load_text(gen.text(changed), "b.yaml").config
    assert second.config.tenants[0] is not first.config.tenants[0]
    assert all(a is b for a, b in
               zip(second.config.tenants[1:], first.config.tenants[1:], strict=True))


def test_a_reused_config_still_gets_every_cross_tenant_check():
    text = textwrap.dedent(BASE)
    first = load_text(text, "t.yaml")
    bad = text.replace("vni: 100", "vni: 100\n        mtu: 100")  # below the minimum
    with pytest.raises(ConfigError, match="mtu"):
        load_text(bad, "t.yaml", previous=first)
    # the tenant is unchanged, and reused; the hypervisors now clash
    clash = text.replace("192.168.50.2/24", "192.168.50.1/24")
    with pytest.raises(ConfigError, match="underlay"):
        load_text(clash, "t.yaml", previous=first)


@pytest.mark.parametrize("name", ["nv-vxlan", "br-int", "br-phy"])
def test_a_vm_port_may_not_take_an_interface_name_netvirt_uses(name):
    e = one_error(BASE + f"        interface: {name}\n")
    assert e.startswith("t.yaml:22:20: tenants[0].ports[0].interface: interface name")
    assert "netvirt's own" in e


def test_ssl_ovsdb_endpoints_are_refused_with_what_to_use_instead():
    e = one_error(BASE.replace("ovsdb: unix:/run/hv2/db.sock", "ovsdb: ssl:10.1.0.2:6640"))
    assert e.startswith("t.yaml:7:12: hypervisors[1].ovsdb:")
    assert "ssl: OVSDB endpoints are not supported yet; use unix:/PATH" in e


@pytest.mark.parametrize("value, message", [
    ("2021-13-45", "'2021-13-45' is not a valid timestamp (month must be in 1..12)"),
    ("!!int x", "'x' is not a valid int"),
    ("!!float y", "'y' is not a valid float"),
    ("!!timestamp x", "'x' is not a valid timestamp; quote it"),
    ("!!bool maybe", "'maybe' is not a valid bool; quote it"),
    ("9" * 5000, "is not a valid int (Exceeds the limit"),
    ("!!map x", "tag !!map does not fit this value"),
    ("!!str [1]", "tag !!str does not fit this value"),
    ("[" * 900 + "]" * 900, "nested more than 32 levels deep"),
])
def test_values_yaml_cannot_construct_are_located_errors(value, message):
    e = one_error(BASE.replace("vni: 100", f"vni: {value}"))
    assert e.startswith("t.yaml:12:") and "tenants[0].networks[0].vni" in e and message in e, e


def test_a_file_that_is_not_utf8_is_a_located_error(tmp_path):
    from netvirt.config import load_file

    p = tmp_path / "latin1.yaml"
    p.write_bytes(BASE.encode().replace(b"name: web1", b"name: w\xe9b1"))
    with pytest.raises(ConfigError) as e:
        load_file(p)
    assert str(e.value.diagnostics[0]).startswith(f"{p}:17:16: not UTF-8 text (byte 0xe9)")


# -- values that once validated and then broke a command, or reached OVSDB ------------------

@pytest.mark.parametrize("change, where, message", [
    # netvirt controller crashed with OverflowError
    (("hypervisors:", "controller:\n  openflow: tcp:127.0.0.1:99999\nhypervisors:"),
     "t.yaml:2:13: controller.openflow", "port from 1 to 65535"),
    # lab up crashed with ValueError
    (("hypervisors:", "controller:\n  openflow: tcp:999.1.1.1:6653\nhypervisors:"),
     "t.yaml:2:13: controller.openflow", "tcp:IPV4:PORT"),
    (("hypervisors:", "controller:\n  api: 127.0.0.1:0\nhypervisors:"),
     "t.yaml:2:8: controller.api", "port from 1 to 65535"),
    # `$` matches before a final newline: this MAC was written into OVSDB
    (('mac: "02:00:00:00:00:01"', 'mac: "02:00:00:00:00:01\\n"'),
     "t.yaml:21:14: tenants[0].ports[0].mac", "MAC must look like"),
    (("        hypervisor: hv1\n", '        hypervisor: hv1\n        interface: "tap1\\n"\n'),
     "t.yaml:20:20: tenants[0].ports[0].interface", "interface names are"),
    (("ovsdb: unix:/run/hv1/db.sock", 'ovsdb: "unix:/run/hv1/db.sock\\n"'),
     "t.yaml:4:12: hypervisors[0].ovsdb", "endpoint must be"),
    (("ovsdb: unix:/run/hv1/db.sock", 'ovsdb: "tcp:10.0.0.1:6640\\n"'),
     "t.yaml:4:12: hypervisors[0].ovsdb", "endpoint must be"),
    # non-ASCII digits (ARABIC-INDIC, FULLWIDTH) pass str.isdigit() and int()
    (("ovsdb: unix:/run/hv1/db.sock", "ovsdb: tcp:10.0.0.1:\u0666\u0666\u0664\u0660"),
     "t.yaml:4:12: hypervisors[0].ovsdb", "endpoint must be"),
    (("hypervisors:", "controller:\n  api: 127.0.0.1:\uff18\uff11\uff18\uff11\nhypervisors:"),
     "t.yaml:2:8: controller.api", "port from 1 to 65535"),
    (("ovsdb: unix:/run/hv1/db.sock", "ovsdb: tcp:10.0.0.1:0"),
     "t.yaml:4:12: hypervisors[0].ovsdb", "endpoint must be"),
    (("ovsdb: unix:/run/hv1/db.sock", "ovsdb: tcp:300.0.0.1:6640"),
     "t.yaml:4:12: hypervisors[0].ovsdb", "endpoint must be"),
    (("  - name: hv1\n", '  - name: "hv1\\n"\n'),
     "t.yaml:2:11: hypervisors[0].name", "pattern"),
])
def test_values_that_look_right_but_are_not_are_located_errors(change, where, message):
    e = one_error(BASE.replace(*change, 1))
    assert e.startswith(where) and message in e, e


@pytest.mark.parametrize("endpoint", ["unix:/run/hv1/db.sock", "tcp:10.0.0.1:6640",
                                      "tcp:[fd00::1]:6640", "tcp:hv1.example:6640"])
def test_endpoints_that_are_right_still_load(endpoint):
    lc = load_text(BASE.replace("unix:/run/hv1/db.sock", endpoint), "t.yaml")
    assert lc.config.hypervisors[0].ovsdb == endpoint


@pytest.mark.parametrize("flag", [["--openflow", "tcp:127.0.0.1:99999"],
                                  ["--openflow", "tcp:999.1.1.1:6653"],
                                  ["--api", "127.0.0.1:\uff18\uff11"]])
def test_the_same_values_as_flags_are_usage_errors(flag, capsys):
    from netvirt.cli import main

    with pytest.raises(SystemExit) as e:  # argparse's usage error
        main(["controller", *flag])
    err = capsys.readouterr().err
    assert e.value.code == 2 and ("port from 1 to 65535" in err or "tcp:IPV4:PORT" in err), err
