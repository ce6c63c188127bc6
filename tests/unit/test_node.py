"""The node agent's reconcile: write what differs, leave others' keys, nothing on a rerun."""
import pytest

from netvirt.errors import NodeError
from netvirt.host.node import NodeAgent, report_changes


class Ovsdb:
    endpoint = "unix:/x"

    def __init__(self, ids, lossy=False):
        self.ids, self.writes, self.lossy = dict(ids), [], lossy

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
    node = NodeAgent(db, report=lambda: REPORT)
    assert node.reconcile_once() == 1 and db.writes == [{"netvirt-node": "1"}]
    assert db.ids["system-id"] == "hv1"
    assert NodeAgent(db, report=lambda: REPORT).reconcile_once() == 0  # a restart: nothing
    assert len(db.writes) == 1


def test_a_write_that_does_not_hold_is_an_error():
    with pytest.raises(NodeError, match="does not hold what was written"):
        NodeAgent(Ovsdb({}, lossy=True), report=lambda: REPORT).reconcile_once()


def test_report_changes_is_a_plain_diff():
    assert report_changes({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "9"}) == {"b": "2"}
