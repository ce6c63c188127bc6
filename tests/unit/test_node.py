"""The node agent's reconcile: write what differs, leave others' keys, nothing on a rerun."""
import pytest

from netvirt.errors import NodeError
from netvirt.host.node import NodeAgent, devices_to_fix, report_changes
from netvirt.pipeline.rows import IFINDEX_KEY, OvsdbState, PortRow


class Ovsdb:
    endpoint = "unix:/x"

    def __init__(self, ids, lossy=False, ports=()):
        self.ids, self.writes, self.lossy = dict(ids), [], lossy
        self.ports = {p.name: p for p in ports}
        self.readded = []

    def read(self):
        return OvsdbState(frozenset(), frozenset(self.ports.values()))

    def set_interface_ids(self, name, changes):
        p = self.ports[name]
        self.ports[name] = p._replace(external_ids=tuple(sorted(
            {**dict(p.external_ids), **changes}.items())))

    def readd_port(self, row):
        self.readded.append(row.name)
        self.ports[row.name] = row

    def connect(self):
        pass

    def external_ids(self):
        return dict(self.ids)

    def set_external_ids(self, changes):
        self.writes.append(changes)
        if not self.lossy:
            self.ids.update(changes)


REPORT = {"netvirt-node": "1", "netvirt-kernel-qdiscs": "htb,tbf"}


def test_only_what_differs_is_written_and_others_keys_stay():
    db = Ovsdb({"system-id": "hv1", "netvirt-node": "0", "netvirt-kernel-qdiscs": "htb,tbf"})
    node = NodeAgent(db, report=lambda: REPORT, ifindexes=lambda names: {})
    assert node.reconcile_once() == 1 and db.writes == [{"netvirt-node": "1"}]
    assert db.ids["system-id"] == "hv1"
    assert NodeAgent(db, report=lambda: REPORT, ifindexes=lambda names: {}).reconcile_once() == 0  # a restart: nothing
    assert len(db.writes) == 1


def test_a_write_that_does_not_hold_is_an_error():
    with pytest.raises(NodeError, match="does not hold what was written"):
        NodeAgent(Ovsdb({}, lossy=True), report=lambda: REPORT, ifindexes=lambda n: {}).reconcile_once()


def test_report_changes_is_a_plain_diff():
    assert report_changes({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "9"}) == {"b": "2"}


VM = PortRow("br-int", "tap1", "", (), (("iface-id", "blue/web1"), ("netvirt-owned", "true")))


def test_a_vm_device_made_again_under_its_name_gets_its_port_added_again():
    kernel = {"tap1": 7}
    db = Ovsdb(dict(REPORT), ports=[VM, VM._replace(name="tap2", type="internal")])
    node = NodeAgent(db, report=lambda: REPORT, ifindexes=lambda names: {
        n: kernel[n] for n in names if n in kernel})
    assert node.reconcile_once() == 1  # the device is recorded
    assert dict(db.ports["tap1"].external_ids)[IFINDEX_KEY] == "7" and not db.readded
    assert node.reconcile_once() == 0  # the same device: nothing
    kernel["tap1"] = 9  # the guest restarted: a new device of that name
    assert node.reconcile_once() == 1 and db.readded == ["tap1"]
    assert dict(db.ports["tap1"].external_ids)[IFINDEX_KEY] == "9"
    assert node.reconcile_once() == 0


def test_devices_to_fix_leaves_ports_without_a_device_alone():
    recorded = VM._replace(external_ids=VM.external_ids + ((IFINDEX_KEY, "3"),))
    assert devices_to_fix([VM, recorded], {}) == ({}, [])
    assert devices_to_fix([recorded], {"tap1": 3}) == ({}, [])
