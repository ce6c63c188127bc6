"""QoS without a switch or a kernel: units and checks with their locations, the OpenFlow half
(meters, DSCP, the aggregate's shared meter) compiled and walked, the to_vm half as tc
records planned against what a device holds, and the pyroute2 requests they become."""
import json
import textwrap

import pytest
from pyroute2.netlink.rtnl.tcmsg import plugins

from netvirt.config import load_file, load_text
from netvirt.config import units
from netvirt.errors import ConfigError
from netvirt.host import tc as kernel
from netvirt.host.qos import QosPass
from netvirt.pipeline.layout import QOS_AGGREGATE_BASE, qos_port_meter_id
from netvirt.pipeline.records import MeterAction, SetField
from netvirt.pipeline.rows import QOS_KEY
from netvirt.pipeline.tables import Table
from netvirt.qos.tc import HTB_CLASS, HTB_HANDLE, NETEM_HANDLE, TC_H_ROOT, TcObject, plan
from netvirt.testing.fakes import FakeNodeOvsdb
from netvirt.topology.qos import ToVm, decode_specs, encode_specs, enforcement, to_vm_specs
from netvirt.overlay.ovsdb import compile_ovsdb

from .helpers import ROOT_EXAMPLES, compile_all, matches_golden

QOS = ROOT_EXAMPLES / "qos.yaml"
BASE = """\
hypervisors:
  - {name: hv1, underlay_ip: 192.168.50.1/24, ovsdb: "unix:/run/hv1/db.sock"}
tenants:
  - name: blue
    qos_policies:
      - name: p
        to_vm: {TO}
        from_vm: {FROM}
    networks:
      - {name: web, subnets: [{cidr: 10.0.0.0/24}]}
    ports:
      - {name: web1, network: web, hypervisor: hv1, ips: [10.0.0.1], qos_policy: p}
"""


def _errors(to_vm="{rate: 10mbit}", from_vm="{rate: 10mbit}", text=BASE) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_text(textwrap.dedent(text.replace("{TO}", to_vm).replace("{FROM}", from_vm)),
                  "t.yaml")
    return [str(d) for d in e.value.diagnostics]


@pytest.mark.parametrize("text, value", [
    ("10mbit", 10_000_000), ("1gbit", 10**9), ("1.5mbit", 1_500_000), ("64kbit", 64_000)])
def test_rates_are_read_as_people_write_them(text, value):
    assert units.rate(text) == value


def test_sizes_times_and_percentages():
    assert units.size("64kb") == 65536 and units.size("1500b") == 1500
    assert units.duration("50ms") == 50_000 and units.duration("1s") == 10**6
    assert units.duration("250us") == 250 and units.percent("0.5%") == 0.5
    assert units.show_rate(1_500_000) == "1500kbit" and units.show_time(50_000) == "50ms"


@pytest.mark.parametrize("to_vm, where, says", [
    ("{rate: 10mbps}", "7:23", "write bits per second (10mbit)"),
    ("{rate: fast}", "7:23", "not a rate"),
    ("{rate: 1bit}", "7:23", "from 8kbit to 10gbit"),
    ("{rate: 10mbit, burst: 1kb}", "7:38", "smaller than one frame (1464b at MTU 1450"),
    ("{loss: 101%}", "7:23", "from 0% to 100%"),
    ("{loss: -1%}", "7:23", "from 0% to 100%"),
    ("{latency: 10ms, jitter: 20ms}", "7:40", "jitter 20ms is larger than latency 10ms"),
    ("{jitter: 2ms}", "7:25", "jitter varies a latency"),
    ("{loss_correlation: 25%}", "7:35", "loss_correlation needs loss"),
    ("{burst: 64kb}", "7:24", "burst is the bucket of a rate"),
    ("{dscp: 46}", "7:23", "dscp marks the packets a VM sends"),
    ("{latency: 5}", "7:26", "write it with its unit, e.g. 50ms"),
])
def test_each_bad_value_is_refused_where_it_is(to_vm, where, says):
    errs = _errors(to_vm=to_vm)
    assert any(e.startswith(f"t.yaml:{where}:") and says in e for e in errs), errs


def test_from_vm_takes_no_latency_or_loss_and_says_why():
    (e,) = _errors(from_vm="{rate: 10mbit, latency: 5ms}")
    assert e.startswith("t.yaml:8:42:") and "before tc could delay or drop them" in e, e


def test_an_unknown_policy_and_a_policy_that_says_nothing():
    errs = _errors(text=BASE.replace("qos_policy: p}", "qos_policy: gold}"))
    assert any("t.yaml:12:82:" in e and "QoS policy 'gold' is not defined in tenant 'blue'; "
               "known QoS policies: p" in e for e in errs), errs
    (e,) = _errors(text=BASE.replace("        to_vm: {TO}\n        from_vm: {FROM}\n", ""))
    assert e.startswith("t.yaml:6:9:") and "says nothing" in e, e


def test_an_aggregate_takes_rate_and_burst_only():
    text = BASE.replace("  - name: blue\n", "  - name: blue\n    aggregate_qos_policy: p\n")
    errs = _errors(to_vm="{rate: 10mbit, latency: 5ms}", text=text)
    assert any("to_vm.latency" in e and "aggregate_qos_policy" in e for e in errs), errs


@pytest.fixture(scope="module")
def lab():
    return compile_all(load_file(QOS))


@pytest.mark.parametrize("hv", ["hv1", "hv2"])
def test_qos_pipeline_matches_golden(lab, hv):
    assert matches_golden(lab[2][hv].dump(), f"qos-{hv}")


def _flows(per_hv, hv, table):
    return [f for f in per_hv[hv].flows if f.table == table and f.priority > 0]


def test_from_vm_rate_is_a_meter_of_the_port_and_dscp_is_set_on_ipv4(lab):
    topo, inv, per_hv, net = lab
    ofport = inv["hv2"].ofports[topo.port("blue", "web2").port.interface]
    meters = {m.meter_id: m for m in per_hv["hv2"].meters}
    m = meters[qos_port_meter_id(ofport)]
    assert (m.rate, m.unit, m.burst) == (2000, "kbps", 1000)  # 2mbit, 500 ms of it by default
    ip = [f for f in _flows(per_hv, "hv2", Table.QOS_FROM_VM) if dict(f.match).get("eth_type")]
    (flow,) = [f for f in ip if dict(f.match)["in_port"] == ofport]
    assert MeterAction(m.meter_id) in flow.actions and SetField("ip_dscp", 46) in flow.actions
    hv1 = {m.meter_id: m for m in per_hv["hv1"].meters}
    web1 = hv1[qos_port_meter_id(inv["hv1"].ofports[topo.port("blue", "web1").port.interface])]
    assert (web1.rate, web1.burst) == (20000, 8388)  # burst: 1mb, in kilobits


def test_the_aggregate_is_one_meter_per_direction_that_every_port_of_the_tenant_passes(lab):
    topo, inv, per_hv, net = lab
    red = [inv["hv1"].ofports[topo.port("red", p).port.interface] for p in ("app1", "app2")]
    for table, field, direction in ((Table.QOS_SHARED_FROM_VM, "in_port", 0),
                                    (Table.QOS_SHARED_TO_VM, "reg1", 1)):
        flows = _flows(per_hv, "hv1", table)
        assert sorted(dict(f.match)[field] for f in flows) == sorted(red)
        assert {a.meter_id for f in flows for a in f.actions if isinstance(a, MeterAction)} \
            == {QOS_AGGREGATE_BASE + direction}


def test_a_walk_passes_the_qos_stages_and_carries_the_mark(lab):
    topo, inv, per_hv, net = lab
    src, dst = topo.port("blue", "web2"), topo.port("blue", "web1")
    pkt = {"eth_src": src.port.mac, "eth_dst": dst.port.mac, "eth_type": 0x0800,
           "ipv4_src": "10.0.0.2", "ipv4_dst": "10.0.0.1", "ip_proto": 1, "nw_ttl": 64,
           "icmpv4_type": 8, "icmpv4_code": 0}
    res = net.inject("hv2", inv["hv2"].ofports[src.port.interface], pkt)
    (delivered,) = res.delivered
    assert delivered[:2] == ("hv1", inv["hv1"].ofports[dst.port.interface])
    assert dict(delivered[2])["ip_dscp"] == 46
    assert any(s.table == Table.QOS_FROM_VM for s in res.steps)


def test_to_vm_policies_go_to_the_node_in_br_int_s_row(lab):
    topo = lab[0]
    specs = to_vm_specs(topo, "hv2")
    web2 = topo.port("blue", "web2").port.interface
    assert specs[web2] == ToVm("tenant/blue/port/web2", 10_000_000, 12500, 40_000, 5_000,
                               25.0, 0.5, 25.0)
    state = compile_ovsdb(topo, "hv2", "netdev", "0a:00:00:00:00:01")
    (br,) = [b for b in state.bridges if b.name == "br-int"]
    assert decode_specs(dict(br.external_ids)[QOS_KEY]) == specs
    assert encode_specs(specs) == dict(br.external_ids)[QOS_KEY]
    with pytest.raises(ValueError, match="not a QoS specification"):
        decode_specs('{"tap": 5}')


SPEC = ToVm("tenant/t/port/p", 10_000_000, 12500, 50_000, 10_000, 25.0, 5.0, 0.0)


def test_rate_and_netem_are_htb_with_netem_under_it_in_kernel_units():
    objects, args, missing = kernel.kernel_objects(SPEC, netem_ok=True)
    assert [(o.kind, o.handle, o.parent) for o in objects] == [
        ("htb", HTB_HANDLE, TC_H_ROOT), ("htb-class", HTB_CLASS, TC_H_ROOT),
        ("netem", NETEM_HANDLE, HTB_CLASS)]
    cls, netem = dict(objects[1].params), dict(objects[2].params)
    assert cls["rate"] == cls["ceil"] == 1_250_000  # bytes/s
    tick = kernel.time2tick(1)
    assert netem["latency"] == int(50_000 * tick) and netem["jitter"] == int(10_000 * tick)
    assert netem["loss"] == int((2**32 - 1) * 0.05) and not missing


def test_without_netem_only_the_rate_is_made_and_the_rest_is_named():
    objects, _, missing = kernel.kernel_objects(SPEC, netem_ok=False)
    assert [o.kind for o in objects] == ["htb", "htb-class"]
    assert missing == ["latency", "jitter", "loss"]
    only_delay, _, _ = kernel.kernel_objects(ToVm("o", latency=1000), netem_ok=True)
    assert [(o.kind, o.parent) for o in only_delay] == [("netem", TC_H_ROOT)]


def test_requests_are_what_pyroute2_encodes_back_to_the_kernel_units():
    objects, args, _ = kernel.kernel_objects(SPEC, netem_ok=True)
    ops = plan(objects, ())
    calls = [kernel.request(op, args) for op in ops]
    assert [(c, k, h) for c, k, h, _ in calls] == [
        ("replace", "htb", HTB_HANDLE), ("replace-class", "htb", HTB_CLASS),
        ("replace", "netem", NETEM_HANDLE)]
    cls = plugins["htb"].get_class_parameters(calls[1][3])["attrs"][0][1]
    assert (cls["rate"], cls["buffer"]) == (dict(objects[1].params)["rate"],
                                           dict(objects[1].params)["buffer"])
    netem = plugins["netem"].get_parameters(calls[2][3])
    want = dict(objects[2].params)
    assert (int(netem["delay"]), int(netem["jitter"]), netem["loss"]) == (
        want["latency"], want["jitter"], want["loss"])
    assert calls[2][3]["parent"] == HTB_CLASS


def _read_back(objects):
    """What a dump gives for ``objects`` (it reports a top class's parent as the root)."""
    return tuple(objects)


def test_the_plan_changes_only_what_differs_and_removes_only_ours():
    want, _, _ = kernel.kernel_objects(SPEC, netem_ok=True)
    assert plan(want, _read_back(want)) == []  # a restart: nothing
    faster, _, _ = kernel.kernel_objects(SPEC._replace(rate=20_000_000), netem_ok=True)
    assert [(op.action, op.obj.kind) for op in plan(faster, want)] == [("replace", "htb-class")]
    no_netem, _, _ = kernel.kernel_objects(SPEC._replace(latency=0, jitter=0, loss=0), True)
    assert [(op.action, op.obj.kind) for op in plan(no_netem, want)] == [("delete", "netem")]
    assert [(op.action, op.obj.kind) for op in plan((), want)] == [("delete", "htb")]
    theirs = (TcObject("fq_codel", 0x10000, TC_H_ROOT),)
    assert plan((), theirs) == []  # someone else's root qdisc on a port with no policy
    assert [op.action for op in plan(want, theirs)] == ["replace"] * 3  # a policy takes it
    netem_only, _, _ = kernel.kernel_objects(SPEC._replace(rate=None), True)
    assert [(op.action, op.obj.kind) for op in plan(netem_only, want)] == [
        ("delete", "htb"), ("replace", "netem")]  # the old root first: its child has 4e57:


class _Kernel:
    """Devices' tc as records, changed by the plans it is given."""

    def __init__(self):
        self.devices: dict[int, tuple] = {7: (TcObject("noqueue", 0, TC_H_ROOT),)}
        self.requests = self.counted = 0

    def read(self, indexes):
        return {i: (self.devices[i], {}) for i in indexes}

    def counters(self, indexes):
        self.counted += 1
        return {i: {"htb": {"bytes": 1, "packets": 1, "drops": 0, "overlimits": 0}}
                for i in indexes}

    def apply(self, index, ops, args):
        self.requests += len(ops)
        have = {o.handle: o for o in self.devices[index]}
        for op in ops:
            if op.action == "delete":
                have = {} if op.obj.parent == TC_H_ROOT else have
                have.pop(op.obj.handle, None)
            else:
                if op.obj.parent == TC_H_ROOT and op.obj.kind != "htb-class":  # a new root
                    have = {h: o for h, o in have.items() if o.kind == "htb-class"}
                have[op.obj.handle] = op.obj
        self.devices[index] = tuple(have.values()) or (TcObject("noqueue", 0, TC_H_ROOT),)


TAP1 = {"tap1": 7}  # the device whose port OVS opened: its ifindex


def test_the_node_pass_makes_reports_and_then_sends_nothing():
    db, k = FakeNodeOvsdb(encode_specs({"tap1": SPEC})), _Kernel()
    node = QosPass(db, k)
    assert node.run(TAP1, netem_ok=False) == ["tap1: tc replace htb",
                                                      "tap1: tc replace htb-class"]
    assert node.run(TAP1, netem_ok=False) == [] and k.requests == 2
    again = QosPass(db, k)  # the node restarted: the kernel and the report are as they were
    assert again.run(TAP1, netem_ok=False) == [] and db.writes == 1
    topo_gap = {"origin": SPEC.origin, "parts": ["latency", "jitter", "loss"],
                "why": "this kernel has no sch_netem"}
    report = json.loads(db.ids["netvirt-qos-state"])["tap1"]
    assert report["not_enforced"] == {"parts": topo_gap["parts"], "why": topo_gap["why"]}
    assert report["held"] == ["htb"] and report["applied"] == list(SPEC)
    db.specs = encode_specs({})
    assert node.run(TAP1, netem_ok=False) == ["tap1: tc delete htb"]
    db.specs = encode_specs({"tap1": SPEC, "tap9": SPEC})  # tap9: its port is not open
    assert node.run(TAP1, netem_ok=False) == ["tap1: tc replace htb",
                                                     "tap1: tc replace htb-class"]
    gone = json.loads(db.ids["netvirt-qos-state"])["tap9"]["not_enforced"]
    assert gone == {"parts": ["rate", "latency", "jitter", "loss"],
                    "why": "ovs-vswitchd has not opened its port yet, or its device is gone"}
    assert node.waiting == {"tap9"}


def test_a_pass_with_nothing_new_reads_counters_only_and_repairs_at_the_next_verify():
    now = [0.0]
    db, k = FakeNodeOvsdb(encode_specs({"tap1": SPEC})), _Kernel()
    node = QosPass(db, k, clock=lambda: now[0])
    node.run(TAP1, netem_ok=False)
    k.devices[7] = (TcObject("noqueue", 0, TC_H_ROOT),)  # someone's `tc qdisc del`
    now[0] = 6.0  # an event wakes the node: counters are due, a verify is not
    assert node.run(TAP1, netem_ok=False) == [] and k.counted == 1
    assert json.loads(db.ids["netvirt-qos-state"])["tap1"]["counters"]["htb"]["bytes"] == 1
    now[0] = 31.0
    assert node.run(TAP1, netem_ok=False) == ["tap1: tc replace htb",
                                                            "tap1: tc replace htb-class"]


def test_a_request_the_kernel_refused_is_tried_again_at_the_next_pass():
    from netvirt.errors import NodeError

    db, k = FakeNodeOvsdb(encode_specs({"tap1": SPEC})), _Kernel()
    real, calls = k.apply, []

    def refuse_once(index, ops, args):
        calls.append(len(ops))
        if len(calls) == 1:
            raise NodeError("tc replace htb 4e56:0 on ifindex 7: (1, 'Operation not permitted')")
        real(index, ops, args)
    k.apply = refuse_once
    node = QosPass(db, k, clock=lambda: 0.0)
    node.run(TAP1, netem_ok=False)
    assert "Operation not permitted" in json.loads(db.ids["netvirt-qos-state"])["tap1"]["error"]
    assert node.run(TAP1, netem_ok=False) == ["tap1: tc replace htb",
                                                            "tap1: tc replace htb-class"]


def test_status_says_what_is_not_enforced_and_why(lab):
    topo = lab[0]
    web2 = topo.port("blue", "web2").port.interface
    (gap,) = [g for g in enforcement(topo, "hv2", None, None, {}).values()
              if g["origin"].endswith("web2")]
    assert gap["parts"] == ["rate", "latency", "jitter", "loss"] and "no node agent" in gap["why"]
    before = enforcement(topo, "hv2", "1", ["htb", "tbf"], {})[web2]
    assert before["pending"] and before["parts"] == ["latency", "jitter", "loss"]
    spec = to_vm_specs(topo, "hv2")[web2]
    done = {web2: {"applied": list(spec), "not_enforced": {"parts": ["latency"], "why": "w"}}}
    assert enforcement(topo, "hv2", "1", ["htb"], done)[web2] == {
        "origin": spec.origin, "parts": ["latency"], "why": "w", "pending": False}
