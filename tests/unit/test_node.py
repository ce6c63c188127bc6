"""The node agent's reconcile: write what differs, leave others' keys, nothing on a rerun."""
import pytest

from netvirt.errors import NodeError
from netvirt.host.node import NodeAgent, report_changes, unread_ports
from netvirt.pipeline.rows import BridgeRow, OvsdbState, PortRow


class Ovsdb:
    endpoint = "unix:/x"

    def __init__(self, ids, lossy=False, ports=(), datapath="netdev"):
        self.ids, self.writes, self.lossy = dict(ids), [], lossy
        self.ports = {p.name: p for p in ports}
        self.ofport = {p.name: n for n, p in enumerate(ports, 1)}
        self.bridges = frozenset({BridgeRow("br-int", datapath, "secure")})
        self.readded = []
        self.qos = None  # br-int's QoS key

    def read(self):
        return OvsdbState(self.bridges, frozenset(self.ports.values()))

    def ofports(self, names):
        return {n: self.ofport[n] for n in names if n in self.ofport}

    def readd_port(self, row):
        self.readded.append(row.name)

    def connect(self):
        pass

    def qos_specs(self):
        return self.qos

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
    kernel, bound = {"tap1": 7, "tap2": 8}, {7, 8}  # ovs-vswitchd reads both devices
    db = Ovsdb(dict(REPORT), ports=[VM, VM._replace(name="tap2", type="internal")])
    node = NodeAgent(db, report=lambda: REPORT, bound=lambda: set(bound),
                     ifindexes=lambda names: {n: kernel[n] for n in names if n in kernel})
    assert node.reconcile_once() == 0 and not db.readded
    kernel["tap1"] = 9  # the guest restarted: a new device of that name, which nothing reads
    bound.discard(7)
    assert node.reconcile_once() == 1 and db.readded == ["tap1"]
    bound.add(9)  # ovs-vswitchd opened the device of the re-added port
    assert node.reconcile_once() == 0 and db.readded == ["tap1"]


def test_the_kernel_datapath_is_left_alone():
    db = Ovsdb(dict(REPORT), ports=[VM], datapath="system")
    node = NodeAgent(db, report=lambda: REPORT, bound=set, ifindexes=lambda names: {"tap1": 7})
    assert node.reconcile_once() == 0 and not db.readded


def test_unread_ports_leaves_ports_not_open_or_without_a_device_alone():
    rows = [VM, VM._replace(name="tap2"), VM._replace(name="tap3"), VM._replace(name="tap4")]
    ofports = {"tap1": 1, "tap2": -1, "tap4": 4}  # tap2 failed to open, tap3 is being added
    devices = {"tap1": 5, "tap2": 6, "tap3": 7}  # tap4's guest is not running
    assert unread_ports(rows, ofports, devices, bound=set()) == [VM]
    assert unread_ports(rows, ofports, devices, bound={5}) == []


def test_tunnel_neighbours_the_kernel_knows_or_that_were_learned_are_put_back():
    from netvirt.host.tunnel_neighbours import parse_show, to_set

    shown = parse_show("IP                      MAC                 Bridge\n"
                       "====================================================\n"
                       "192.168.50.2            36:00:2e:2b:cf:21   br-phy\n"
                       "192.168.50.4            36:00:2e:2b:cf:24   br-phy STALE\n"
                       "fe80::1                 36:00:2e:2b:cf:22   br-phy\n")
    assert shown == {"192.168.50.2": "36:00:2e:2b:cf:21"}
    kernel = {"192.168.50.3": "7e:d4:cd:1d:17:91", "192.168.50.2": "36:00:2e:2b:cf:21"}
    assert to_set(kernel, shown, {}) == {"192.168.50.3": "7e:d4:cd:1d:17:91"}
    assert to_set(kernel, {**shown, **kernel}, {}) == {}  # all there: nothing to do
    flushed = {}  # ovs-vswitchd re-read its routes: every entry gone
    assert to_set({}, flushed, {**kernel}) == kernel  # what it had learned goes back
    moved = {**kernel, "192.168.50.3": "7e:00:00:00:00:01"}  # a peer's new MAC
    assert to_set(moved, kernel, kernel) == {"192.168.50.3": "7e:00:00:00:00:01"}


class Neighbours:
    def __init__(self):
        self.calls = []

    def restore(self, kernel):
        self.calls.append(kernel)
        return sorted(kernel)


def test_the_node_keeps_tunnel_neighbours_on_the_userspace_datapath_only():
    for datapath, pinned in (("netdev", True), ("system", False)):
        n = Neighbours()
        node = NodeAgent(Ovsdb(dict(REPORT), datapath=datapath), report=lambda: REPORT,
                         neighbours=n, kernel_neighbours=lambda dev: {"192.168.50.3": "aa"})
        assert node.reconcile_once() == (1 if pinned else 0)
        assert n.calls == ([{"192.168.50.3": "aa"}] if pinned else [])
