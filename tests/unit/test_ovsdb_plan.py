"""The OVSDB row plan: what netvirt writes is the difference, only its own rows go, and
keys others set (libvirt's, an operator's) stay."""
from netvirt.pipeline.rows import OWNER_KEY, BridgeRow, OvsdbState, PortRow
from netvirt.reconcile.ovsdb_plan import plan_rows
from netvirt.testing.fakes import FakeOvsdb

BR_INT = BridgeRow("br-int", "netdev", "secure", ("OpenFlow13",), (("datapath-id", "00000000000000aa"),),
                   "tcp:127.0.0.1:6653")
TUNNEL = PortRow("br-int", "nv-vxlan", "vxlan", (("key", "flow"), ("remote_ip", "flow")),
                 ((OWNER_KEY, "true"),), 4789)
VM = PortRow("br-int", "tap1", "", (), (("attached-mac", "02:00:00:00:00:01"),
                                       ("iface-id", "blue/web1"), (OWNER_KEY, "true")))


def _state(*rows):
    return OvsdbState(frozenset(r for r in rows if isinstance(r, BridgeRow)),
                      frozenset(r for r in rows if isinstance(r, PortRow)))


def test_an_empty_database_gets_everything_bridges_and_tunnel_first():
    plan = plan_rows(_state(BR_INT, TUNNEL, VM), _state())
    assert [c.row.name for c in plan.bridges] == ["br-int"] and plan.bridges[0].create
    assert plan.bridges[0].controller
    assert [c.row.name for c in plan.tunnels] == ["nv-vxlan"]
    assert [c.row.name for c in plan.ports] == ["tap1"] and not plan.delete_ports


def test_what_is_there_already_is_not_written_again():
    assert plan_rows(_state(BR_INT, TUNNEL, VM), _state(BR_INT, TUNNEL, VM)).empty


def test_keys_others_set_are_kept_and_are_no_reason_to_write():
    libvirt = VM._replace(external_ids=VM.external_ids + (("vm-uuid", "abc"),
                                                          ("iface-status", "active")))
    bridge = BR_INT._replace(other_config=BR_INT.other_config + (("mac-table-size", "5000"),))
    assert plan_rows(_state(BR_INT, VM), _state(bridge, libvirt)).empty
    moved = VM._replace(external_ids=(("attached-mac", "02:00:00:00:00:02"),
                                      ("iface-id", "blue/web1"), (OWNER_KEY, "true")))
    plan = plan_rows(_state(BR_INT, moved), _state(bridge, libvirt))
    assert [(c.row.name, c.create) for c in plan.ports] == [("tap1", False)]
    db = FakeOvsdb("unix:/x")  # a merge, as ovsdbapp's db_set does with a map
    db.bridges["br-int"], db.ports[("br-int", "tap1")] = bridge, libvirt
    db.apply(plan)
    ids = dict(db.ports[("br-int", "tap1")].external_ids)
    assert ids["vm-uuid"] == "abc" and ids["attached-mac"] == "02:00:00:00:00:02"


def test_only_ports_netvirt_owns_are_deleted():
    operator = PortRow("br-int", "mirror0", "internal", (), ())
    other_bridge = PortRow("br-ex", "eth1", "", (), ((OWNER_KEY, "true"),))
    plan = plan_rows(_state(BR_INT, TUNNEL), _state(BR_INT, TUNNEL, VM, operator, other_bridge))
    assert plan.delete_ports == (("br-int", "tap1"),)


def test_a_changed_bridge_column_is_set_alone_and_others_config_merged():
    have = BR_INT._replace(fail_mode="standalone", other_config=(("stp-enable", "true"),))
    plan = plan_rows(_state(BR_INT), _state(have))
    (change,) = plan.bridges
    cols = dict(change.columns)
    assert not change.create and not change.controller
    assert cols["fail_mode"] == "secure"
    assert cols["other_config"] == {"stp-enable": "true", "datapath-id": "00000000000000aa"}
    assert "datapath_type" not in cols


def test_a_port_libvirt_made_for_the_vm_is_adopted_as_it_is():
    libvirt = PortRow("br-int", "tap1", "", (), (("iface-id", "blue/web1"), ("vm-uuid", "abc")))
    assert plan_rows(_state(BR_INT, VM), _state(BR_INT, libvirt)).empty
    assert not plan_rows(_state(BR_INT), _state(BR_INT, libvirt)).delete_ports  # not ours
    stranger = PortRow("br-int", "tap1", "", (), (("iface-id", "red/other"),))
    assert [c.row.name for c in plan_rows(_state(BR_INT, VM), _state(BR_INT, stranger)).ports] \
        == ["tap1"]
