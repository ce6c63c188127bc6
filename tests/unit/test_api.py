"""The API and the CLI in-process, over real HTTP, against a real controller service whose
agents drive in-memory switches (no root, no OVS)."""
import json
import shutil
import time

import pytest
import yaml

from netvirt.cli import main
from netvirt.client import Client
from netvirt.config import load_file
from netvirt.pipeline.records import origin_id
from netvirt.reconcile.agent import HypervisorAgent
from netvirt.controller.api import ApiServer
from netvirt.controller.openapi import SPEC
from netvirt.controller.service import ControllerService
from netvirt.errors import ConfigError, ApiError, UsageError
from netvirt.testing.fakes import FakeSwitch
from netvirt.topology import Topology, render

from .helpers import DEMO_FLOWS, ROOT_EXAMPLES, sequential_inventory

DEMO = ROOT_EXAMPLES / "demo.yaml"
OPENFLOW = "tcp:172.30.0.1:6653"


@pytest.fixture
def controller(request):
    """A controller with fake switches that have the ports of DEMO (or of the file the
    test parametrizes it with, indirectly)."""
    lc = load_file(getattr(request, "param", DEMO))
    inv = sequential_inventory(Topology(lc.config))
    switches = {hv: FakeSwitch(dict(i.ofports)) for hv, i in inv.items()}

    def agent(name, service, audit):
        a = HypervisorAgent(name, service, audit,
                            ovsdb_factory=lambda ep: switches[name].ovsdb)
        a.attach(switches[name])
        return a

    service = ControllerService(None, OPENFLOW, audit_interval=60, agent_factory=agent)
    api = ApiServer(service, "127.0.0.1:0")
    api.start()
    addr = "127.0.0.1:%d" % api.address[1]
    yield service, addr, switches
    api.stop()
    service.stop()


def _wait_sync(client):
    for _ in range(100):
        st = client.status()
        if st["in_sync"] and st["revision"]:
            return st
        time.sleep(0.02)
    raise AssertionError(st)


def test_apply_status_and_zero_extra_mods(controller, capsys):
    service, addr, switches = controller
    assert main(["apply", str(DEMO), "--api", addr]) == 0
    assert "converged in" in capsys.readouterr().out
    st = Client(addr).status()
    assert st["revision"] == 1 and st["in_sync"]
    assert {h: v["installed_flows"] for h, v in st["hypervisors"].items()} == \
        dict.fromkeys(("hv1", "hv2", "hv3"), DEMO_FLOWS)
    assert main(["apply", str(DEMO), "--api", addr]) == 0  # same intent again
    assert sum(s.flow_mods_sent for s in switches.values()) == 3 * DEMO_FLOWS  # none more
    assert main(["status", "--api", addr]) == 0
    assert "revision 2: healthy" in capsys.readouterr().out


def test_the_controller_validates_what_it_is_sent_with_locations(controller):
    """The CLI validates before it sends; the controller must not rely on that."""
    service, addr, _ = controller
    text = DEMO.read_text()
    bad = text.replace("ips: [10.0.0.2]", "ips: [10.0.0.1]", 1)  # blue/web1's address
    client = Client(addr)
    with pytest.raises(ConfigError) as e:
        client._call("POST", "/v1/config", {"source": bad, "filename": "x.yaml"})
    assert [f"{d.file}:{d.line}:{d.col}" for d in e.value.diagnostics] == ["x.yaml:28:59"]
    assert "already used by port 'web1'" in str(e.value)


def test_the_document_is_what_is_applied_and_a_source_that_says_otherwise_lends_no_line(controller):
    """Applying `data` while recording the digest of `source` once showed a removed tenant
    under the full file's digest.  The digest is now the document's, and the source gives
    line numbers only once it is seen to hold that very document."""
    service, addr, _ = controller
    text = DEMO.read_text()
    full = load_file(DEMO)
    data = yaml.safe_load(text)
    del data["tenants"][1]
    client = Client(addr)
    with pytest.raises(UsageError, match="unknown field"):
        client._call("POST", "/v1/config", {"source": text, "sauce": 1})
    bad = yaml.safe_load(text)
    bad["tenants"][0]["ports"][1]["ips"] = ["10.0.0.1"]  # invalid, and not what text says
    with pytest.raises(UsageError, match="not the document its source"):
        client._call("POST", "/v1/config", {"source": text, "filename": "x.yaml", "data": bad})
    assert service.snapshot()[0] == 0  # nothing was applied
    r = client._call("POST", "/v1/config", {"source": text, "filename": "x.yaml", "data": data})
    applied = service.snapshot()[1]
    assert [t.name for t in applied.config.tenants] == ["blue"] and r["digest"] != full.revision
    assert Client(addr).status()["config"]["digest"] == r["digest"] == applied.revision
    assert not applied.source_matches and applied.location("tenant/blue/port/web2") is None
    # the CLI's request: the document and its own source; lines as the file has them
    r = client.apply(full)
    assert r["digest"] == full.revision
    assert str(service.snapshot()[1].location("tenant/blue/port/web2")) == \
        str(full.location("tenant/blue/port/web2"))
    # the source alone (a client that does not parse YAML) is parsed by the controller
    r = client._call("POST", "/v1/config", {"source": text, "filename": "demo.yaml"})
    assert r["digest"] == full.revision and service.snapshot()[1].location("tenant/blue/port/web2")


def test_topology_tree_json_and_port_state(controller, capsys):
    service, addr, _ = controller
    service.apply(load_file(DEMO))
    _wait_sync(Client(addr))
    assert main(["topo", "--api", addr]) == 0
    out = capsys.readouterr().out
    assert "hv1  connected  netdev  underlay 192.168.50.1/24  netem NO" in out
    assert "web1         hv1      ofport 1     up   02:00:00:00:01:01  10.0.0.1" in out
    assert main(["topo", "--json", "--api", addr]) == 0
    t = json.loads(capsys.readouterr().out)
    web1 = t["tenants"][0]["networks"][0]["ports"][0]
    assert web1["defined_at"] == f"{DEMO}:27:9" and web1["up"]
    assert t["hypervisors"][0]["tunnel"]["remotes"] == ["hv2", "hv3"]


def test_topology_shows_routers_where_they_are_and_what_they_translate(controller, capsys):
    service, addr, _ = controller
    service.apply(load_file(ROOT_EXAMPLES / "showcase.yaml"))
    _wait_sync(Client(addr))
    assert main(["topo", "--api", addr]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index("    router edge  on hv1, hv2, hv3")  # after blue's networks
    assert out[at + 1].startswith("      interface web          10.0.0.254      ")
    assert out[at + 2].startswith("      interface db           10.1.0.254      ")
    assert out[at + 3:at + 5] == ["      external internet  203.0.113.10  snat on  gateway hv3",
                                  "      floating ip 203.0.113.20 -> 10.0.0.1"]
    assert out[at + 5].startswith("    security group web  members: web1, web2")
    t = Client(addr).topology()
    edge = t["tenants"][0]["routers"][0]
    showcase = (ROOT_EXAMPLES / "showcase.yaml").read_text().splitlines()
    line = int(edge["defined_at"].split(":")[-2])
    assert showcase[line - 1].strip() == "- name: edge"
    assert t["tenants"][1]["routers"] == []


@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz `dot` is not installed "
                    "(apt-get install graphviz; scripts/setup does)")
def test_png_is_an_image_with_a_node_per_hypervisor_and_port(controller, tmp_path, capsys):
    service, addr, _ = controller
    service.apply(load_file(DEMO))
    _wait_sync(Client(addr))
    png = tmp_path / "topo.png"
    assert main(["topo", "--png", str(png), "--api", addr]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    g = render.graph(Client(addr).topology())
    kinds = [a["kind"] for _, a in g.nodes(data=True)]
    assert kinds.count("hypervisor") == 3 and kinds.count("port") == 6
    dot = render.dot(Client(addr).topology())
    assert "port_blue_web1" in dot and "hv_hv3" in dot


@pytest.mark.parametrize("args, verdict, last_table, origin", [
    (["--from", "blue/web1", "--to-ip", "10.0.0.3", "--tcp-dst", "80"],
     "delivered to blue/web3 (ofport 1) on hv3 via tunnel hv1 -> hv3", "L2_LOOKUP",
     "tenant/blue/port/web3"),
    (["--from", "red/app1", "--to-ip", "10.0.0.3"],
     "not delivered: ARP for 10.0.0.3 is not answered in red/app: no port there has that "
     "address (request reached: no other port; dropped by: hv2 ARP_RESPONDER, hv3 "
     "ARP_RESPONDER)", "ARP_RESPONDER", "pipeline"),
    (["--from", "blue/web1", "--to-ip", "10.0.0.2", "--src-ip", "10.0.0.9"],
     "not delivered: the ARP request was dropped by hv1 PORT_SECURITY: PORT_SECURITY  prio=0",
     "PORT_SECURITY",
     "pipeline"),
])
def test_trace_verdicts_with_origins(controller, capsys, args, verdict, last_table, origin):
    service, addr, _ = controller
    service.apply(load_file(DEMO))
    _wait_sync(Client(addr))
    assert main(["trace", "--api", addr, "--json", *args]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["verdict"].startswith(verdict), r["verdict"]
    stage = r.get("packet", r["arp"])
    decided = [s for s in stage["steps"] if s["table"] == last_table][-1]  # the last visit
    assert decided["origin"] == origin
    if origin != "pipeline":
        assert decided["defined_at"].startswith(f"{DEMO}:")


FIREWALLED = ROOT_EXAMPLES / "firewalled.yaml"


@pytest.mark.parametrize("controller", [FIREWALLED], indirect=True)
def test_trace_names_the_rule_that_allowed_and_the_firewall_that_denied(controller, capsys):
    service, addr, _ = controller
    fw = FIREWALLED
    service.apply(load_file(fw))
    _wait_sync(Client(addr))
    assert main(["trace", "--api", addr, "--json", "--from", "shop/web1", "--to-ip", "10.2.0.3",
                 "--tcp-dst", "5432"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["verdict"].startswith("delivered to shop/db1"), r["verdict"]
    judged = [s for s in r["packet"]["steps"] if s["table"] in ("ACL_FROM_VM", "ACL_TO_VM")]
    assert [(s["table"], s["origin"], s["ct_state"]) for s in judged] == [
        ("ACL_FROM_VM", "tenant/shop/security_group/web/rule/3", "+trk+new"),
        ("ACL_TO_VM", "tenant/shop/security_group/db/rule/0", "+trk+new")]
    line = fw.read_text().splitlines()[int(judged[1]["defined_at"].split(":")[1]) - 1]
    assert "ports: 5432, remote_group: web" in line
    assert main(["trace", "--api", addr, "--from", "shop/client", "--to-ip", "10.2.0.3",
                 "--tcp-dst", "5432"]) == 0
    out = capsys.readouterr().out
    assert "conntrack: +trk+new" in out
    assert ("verdict: dropped by hv1 ACL_TO_VM: the firewall of shop/db1: no rule of its "
            "security groups (db) allows what it receives, and tenant shop's default for "
            f"ingress is deny ({fw}:") in out and "; in the drop log" in out, out


@pytest.mark.parametrize("controller", [FIREWALLED], indirect=True)
def test_each_rule_counts_the_connections_it_allowed_in_topo_json_and_metrics(controller, capsys):
    service, addr, switches = controller
    service.apply(load_file(FIREWALLED))
    _wait_sync(Client(addr))
    rule = "tenant/shop/security_group/db/rule/0"  # 5432 from web, db1 on hv1
    sw = switches["hv1"]
    commit = [f for f in sw.flows.values() if f.table == 81 and f.cookie >> 32 == origin_id(rule)
              and "conj_id" in dict(f.match)]
    assert len(commit) == 1, "db's rule commits on hv1"
    sw.hits[commit[0].cookie] = 3  # three connections (OVS counts no clause flow)
    t = Client(addr).topology()
    db = next(g for g in t["tenants"][0]["security_groups"] if g["name"] == "db")
    assert db["members"] == ["db1"]
    assert db["rules"][0]["connections"] == 3 and db["rules"][0]["ports"] == "5432"
    assert main(["topo", "--api", addr]) == 0
    out = capsys.readouterr().out
    assert "      rule 0  ingress tcp 5432         from group web  3 connection(s)" in out, out
    text = Client(addr).metrics()
    assert 'netvirt_firewall_rule_connections_total{group="db",rule="0",tenant="shop"} 3.0' in text


def test_trace_of_an_unknown_port_is_a_usage_error(controller, capsys):
    service, addr, _ = controller
    service.apply(load_file(DEMO))
    assert main(["trace", "--api", addr, "--from", "blue/nope", "--to-ip", "10.0.0.1"]) == 2
    assert "no port 'blue/nope' in the config; known: blue/web1" in capsys.readouterr().err


def test_metrics_exposition(controller):
    service, addr, switches = controller
    service.apply(load_file(DEMO))
    _wait_sync(Client(addr))
    switches["hv1"].port_stats[1] = {"rx_packets": 7, "rx_bytes": 700}
    import urllib.request

    # a query string (scrapers add some) does not change the endpoint
    text = urllib.request.urlopen(f"http://{addr}/metrics?scrape=1").read().decode()
    assert 'netvirt_port_rx_packets_total{hypervisor="hv1",port="web1",tenant="blue"} 7.0' in text
    assert 'netvirt_tenant_rx_bytes_total{tenant="blue"} 700.0' in text
    assert f'netvirt_flows{{hypervisor="hv2",state="installed"}} {DEMO_FLOWS}.0' in text
    assert 'netvirt_switch_connected{hypervisor="hv3"} 1.0' in text
    assert 'netvirt_reconciliations_total{hypervisor="hv1"}' in text
    # each dropping stage's catch-all has a counter; a lookup stage's empty miss drops nothing
    assert 'netvirt_pipeline_drops_packets_total{hypervisor="hv1",table="PORT_SECURITY"}' in text
    assert 'table="LB_AFFINE"' in text and 'table="LB_AFFINITY"' not in text


def test_openapi_lists_every_endpoint(controller):
    _, addr, _ = controller
    served = Client(addr)._call("GET", "/v1/openapi.json")
    assert served == json.loads(json.dumps(SPEC))
    import netvirt.controller.api as api

    for path in ("/v1/status", "/v1/topology", "/v1/config", "/v1/plan", "/v1/trace",
                 "/metrics", "/v1/openapi.json"):
        assert path in SPEC["paths"] and path in api.__doc__


def test_token_is_required_off_loopback_and_checked():
    with pytest.raises(UsageError, match="would be reachable off this host"):
        ApiServer(None, "0.0.0.0:0")
    service = ControllerService(None, OPENFLOW)
    api = ApiServer(service, "127.0.0.1:0", token="s3cret")
    api.start()
    addr = "127.0.0.1:%d" % api.address[1]
    try:
        with pytest.raises(ApiError, match="401"):
            Client(addr, token="").status()
        with pytest.raises(ApiError, match="401"):
            Client(addr, token="wrong").status()
        assert Client(addr, token="s3cret").status()["revision"] == 0
    finally:
        api.stop()


def test_plan_cites_yaml_lines_and_changes_nothing(controller, tmp_path, capsys):
    service, addr, switches = controller
    service.apply(load_file(DEMO))
    _wait_sync(Client(addr))
    changed = tmp_path / "changed.yaml"
    changed.write_text(DEMO.read_text().replace("ips: [10.0.0.2]", "ips: [10.0.0.12]", 1))
    mods = sum(s.flow_mods_sent for s in switches.values())
    assert main(["plan", "-v", "--api", addr, str(changed)]) == 0
    out = capsys.readouterr().out
    assert "hv1: no change" in out and "hv2: 6 change(s)" in out  # the owner answers its ARP
    assert "hv3: no change" in out and "6 change(s) in total; nothing was applied" in out
    assert ("isolation proven: no port reaches what the intent does not allow; every firewall "
            "opens no connection its security groups do not allow (6 port(s)") in out
    assert "arp_tpa=10.0.0.12" in out and f"[tenant/blue/port/web2]  {changed}:28:9" in out
    assert f"[tenant/blue/port/web2]  {DEMO}:28:9" in out  # the flow it replaces, from the current file
    assert sum(s.flow_mods_sent for s in switches.values()) == mods
    assert Client(addr).status()["revision"] == 1


def _raw(addr: str, request: bytes) -> bytes:
    import socket
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_a_bad_content_length_is_a_400_not_a_dropped_connection(controller):
    _, addr, _ = controller
    for length in (b"twelve", b"-5"):
        reply = _raw(addr, b"POST /v1/config HTTP/1.0\r\nContent-Length: " + length + b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400") and b"bad Content-Length" in reply, reply


def test_a_server_bug_is_answered_as_one(controller, monkeypatch):
    service, addr, _ = controller
    monkeypatch.setattr(service, "topology", lambda: 1 / 0)
    with pytest.raises(ApiError, match="500: internal error \\(ZeroDivisionError"):
        Client(addr).topology()
    assert Client(addr).status()["revision"] == 0  # and the API still serves


def test_the_loopback_token_is_made_once_for_root_only_and_clients_read_it(tmp_path):
    from netvirt import apitoken

    path = tmp_path / "netvirt" / "api-token"
    token = apitoken.ensure_token(path)
    assert len(token) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert apitoken.ensure_token(path) == token == apitoken.read_token(path)
    assert apitoken.read_token(tmp_path / "missing") is None


def test_a_bug_in_a_command_is_reported_without_a_traceback(monkeypatch, capsys):
    import netvirt.cli

    monkeypatch.setattr(netvirt.cli, "cmd_validate", lambda args: 1 / 0)
    assert main(["validate", str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert "netvirt: internal error: ZeroDivisionError" in err and "Traceback" not in err


def test_trace_to_the_ports_own_address_is_a_usage_error(controller, capsys):
    service, addr, _ = controller
    service.apply(load_file(DEMO))
    _wait_sync(Client(addr))
    assert main(["trace", "--api", addr, "--from", "blue/web1", "--to-ip", "10.0.0.1"]) == 2
    assert "is blue/web1's own address" in capsys.readouterr().err


def test_trace_off_the_subnet_goes_to_the_gateway(controller, capsys):
    service, addr, _ = controller
    service.apply(load_file(DEMO))  # blue/web has a gateway, red/app none
    _wait_sync(Client(addr))
    assert main(["trace", "--api", addr, "--json", "--from", "blue/web1", "--to-ip", "8.8.8.8"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["arp"]["entries"][0]["packet"]["arp_tpa"] == "10.0.0.254"
    assert r["verdict"].endswith("(10.0.0.254 is the gateway the guest sends 8.8.8.8 to)")
    assert main(["trace", "--api", addr, "--json", "--from", "red/app1", "--to-ip", "8.8.8.8"]) == 0
    assert "has no gateway, so the guest has no route" in json.loads(capsys.readouterr().out)["verdict"]


def test_topo_png_to_an_unwritable_path_is_a_usage_error(controller, capsys):
    if not shutil.which("dot"):
        pytest.skip("Graphviz's dot is not installed (scripts/setup installs graphviz)")
    _, addr, _ = controller
    assert main(["topo", "--api", addr, "--png", "/nonexistent-dir/x.png"]) == 2
    err = capsys.readouterr().err
    assert "cannot write /nonexistent-dir/x.png" in err and "Traceback" not in err, err


def test_messages_from_a_second_connection_claiming_a_datapath_move_nothing(controller):
    """A fake switch given hv1's datapath id: its port status and flow-removed messages
    must not reach hv1's agent (only the attached connection's do)."""
    from types import SimpleNamespace

    from netvirt.overlay.ovsdb import datapath_id

    service, addr, switches = controller
    assert main(["apply", str(DEMO), "--api", addr]) == 0
    agent = service.agents["hv1"]
    events = []
    agent.port_changed = lambda *a: events.append(("port", a))
    agent.flow_removed = lambda *a: events.append(("removed", a))
    rogue = SimpleNamespace(id=datapath_id("hv1"))
    service.port_status(SimpleNamespace(datapath=rogue, reason=0, desc=None))
    service.flow_removed(SimpleNamespace(datapath=rogue, table_id=0, priority=0, cookie=1))
    assert events == []


def test_apply_refuses_tables_that_would_join_two_tenants_and_no_switch_changes(controller,
                                                                             monkeypatch, capsys):
    """A compiler bug injected into L2_LOOKUP (blue's frames to red/app2's MAC tunnelled
    into red's network): the proof refuses the revision before any agent sees it."""
    import netvirt.overlay
    from netvirt.pipeline.layout import TUNNEL_OFPORT, VNI_MASK
    from netvirt.pipeline.records import Flow, Output, SetField
    from netvirt.pipeline.tables import Table

    service, addr, switches = controller
    lc = load_file(DEMO)
    topo = Topology(lc.config)
    web1, app2 = topo.port("blue", "web1"), topo.port("red", "app2")
    real = netvirt.overlay.compile_l2

    def broken(net):
        flows, groups, meters = real(net)
        if net.vni == web1.network.vni and any(p.origin == web1.origin for p in net.bound):
            flows = flows + [Flow.make(
                Table.L2_LOOKUP, 100, {"metadata": (net.vni, VNI_MASK), "eth_dst": app2.port.mac},
                [SetField("tunnel_id", app2.network.vni), SetField("tun_ipv4_dst", "192.168.50.2"),
                 Output(TUNNEL_OFPORT)], "tenant/blue/network/web")]
        return flows, groups, meters
    monkeypatch.setattr(netvirt.overlay, "compile_l2", broken)
    assert main(["plan", "--api", addr, str(DEMO)]) == 1
    out = capsys.readouterr().out
    assert "isolation NOT proven: 1 reach(es)" in out
    assert "blue/web1 can reach red/app2, which the intent does not allow" in out
    assert "a packet that does: eth_src=02:00:00:00:01:01,eth_type=0x800,ipv4_src=10.0.0.1," \
        "eth_dst=02:00:00:00:02:02" in out
    assert f"[tenant/blue/network/web]  ({DEMO}:" in out  # the wrong flow, with its YAML line
    assert main(["apply", "--api", addr, str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert "409" in err and "blue/web1 can reach red/app2" in err and "nothing was applied" in err
    assert Client(addr).status()["revision"] == 0
    assert sum(s.flow_mods_sent for s in switches.values()) == 0
