"""In-memory stand-ins for a switch and an OVSDB server, behind the driver Protocols.

They keep state the way the real ones do (a flow table keyed like OVS's, ofports assigned
as interfaces are added), so the reconciler's behaviour — restart with zero flow mods,
repair, deletes of foreign flows — is tested without root.  They do not stand in for the
component under test: the agent, compilers and diff are real."""
from __future__ import annotations

from netvirt.errors import OvsdbError
from netvirt.pipeline.layout import INT_BRIDGE
from netvirt.pipeline.records import Meter
from netvirt.pipeline.rows import BridgeRow, OvsdbState, PortRow
from netvirt.reconcile.diff import InstalledFlow, Plan
from netvirt.reconcile.ovsdb_plan import RowPlan


class FakeSwitch:
    """A br-int and, in ``ovsdb``, its hypervisor's OVSDB: the switch's LOCAL MAC is the
    one that OVSDB gives br-int, as ovs-vswitchd makes it."""

    address = "192.0.2.1:40000"

    def __init__(self, ofports: dict[str, int] | None = None, ovsdb=None):
        self.ovsdb = ovsdb if ovsdb is not None else FakeOvsdb("unix:/fake/db.sock")
        self.closed = False
        self.flows: dict[tuple, InstalledFlow] = {}  # (table, priority, match) -> flow
        self.groups: set[int] = set()
        self.meters: dict[int, Meter] = {}
        self.meter_drops: dict[int, int] = {}
        self.ofports = dict(ofports or {})
        self.flow_mods_sent = 0
        self.group_mods_sent = 0
        self.port_stats: dict[int, dict] = {}
        self.hits: dict[int, int] = {}  # cookie -> packets, for read_table_counters
        self.dp = object()  # the connection this switch is, as OFSwitch.dp
        self.packets_out: list[tuple] = []  # (actions, frame) of packet_out_actions

    def read_flows(self) -> list[InstalledFlow]:
        return list(self.flows.values())

    def read_groups(self) -> set[int]:
        return set(self.groups)

    def read_meters(self) -> dict[int, Meter]:
        return {i: Meter(m.meter_id, m.rate, m.burst, m.unit) for i, m in self.meters.items()}

    def read_ports(self) -> dict[str, tuple[int, bool]]:
        return {name: (ofport, True) for name, ofport in self.ofports.items()}

    def read_port_stats(self) -> dict[int, dict]:
        """Counters as a switch would report them; tests set ``port_stats``."""
        zero = dict.fromkeys(("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped",
                              "tx_dropped"), 0)
        return {p: {**zero, **self.port_stats.get(p, {})} for p in self.ofports.values()}

    def read_meter_stats(self) -> dict[int, int]:
        """Packets each meter dropped; tests set ``meter_drops``."""
        return {i: self.meter_drops.get(i, 0) for i in self.meters}

    def read_flow_counters(self, cookie: int, mask: int) -> list[tuple[int, int]]:
        return [(f.table, 0) for f in self.flows.values() if f.cookie & mask == cookie & mask]

    def read_table_counters(self, table: int) -> dict[int, int]:
        """Every flow has hit ``hits`` packets (a test sets it)."""
        return {f.cookie: self.hits.get(f.cookie, 0) for f in self.flows.values()
                if f.table == table}

    def apply(self, plan: Plan) -> None:
        for m in plan.add_meters + plan.modify_meters:
            self.meters[m.meter_id] = m
        self.groups |= {g.group_id for g in plan.add_groups}
        for f in plan.delete_flows:  # DELETE_STRICT with the exact cookie
            cur = self.flows.get((f.table, f.priority, f.match))
            if cur is not None and cur.cookie == f.cookie:
                del self.flows[(f.table, f.priority, f.match)]
        for f in plan.add_flows:  # ADD overwrites the same (table, priority, match)
            self.flows[(int(f.table), f.priority, f.match)] = InstalledFlow(
                int(f.table), f.priority, f.cookie, f.match)
        self.groups -= set(plan.delete_groups)
        for i in plan.delete_meters:
            self.meters.pop(i, None)
        self.flow_mods_sent += len(plan.delete_flows) + len(plan.add_flows)
        self.group_mods_sent += len(plan.add_groups) + len(plan.delete_groups)

    def abort(self, reason: str) -> None:
        pass

    def packet_out_actions(self, actions: tuple, data: bytes) -> None:
        self.packets_out.append((actions, data))

    def local_mac(self) -> str | None:
        br = self.ovsdb.bridges.get(INT_BRIDGE)
        return dict(br.other_config).get("hwaddr") if br is not None else None

    def close(self) -> None:
        self.closed = True


class FakeOvsdb:
    """Rows as an ovsdb-server holds them: a plan is carried out on them the way the real
    driver's commands are (maps merged, only the planned rows touched)."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.bridges: dict[str, BridgeRow] = {}
        self.ports: dict[tuple[str, str], PortRow] = {}
        self.writes = 0  # transactions that changed something
        self.full_reads = 0
        self.down = False  # as if ovsdb-server were stopped
        self.neighbours: dict = {}  # what br-int's external_ids keep of learned MACs

    def connect(self) -> None:
        self._check()

    def connected(self) -> bool:
        return not self.down

    def _check(self) -> None:
        if self.down:
            raise OvsdbError(f"cannot connect to OVSDB at {self.endpoint}: connection "
                             f"refused; is ovsdb-server running there?")

    def close(self) -> None:
        pass

    def datapath_hint(self) -> str | None:
        return "netdev"

    def kernel_qdiscs(self) -> list[str] | None:
        return ["htb", "tbf"]

    def node_version(self) -> str | None:
        return "test"

    def qos_state(self) -> str | None:
        return None

    def saved_neighbours(self) -> dict[tuple[int, str], str]:
        self._check()
        return dict(self.neighbours)

    def save_neighbours(self, learned: dict[tuple[int, str], str]) -> None:
        self._check()
        self.neighbours.update(learned)

    def bridge_mac(self, name: str) -> str | None:
        self._check()
        br = self.bridges.get(name)
        return dict(br.other_config).get("hwaddr") if br is not None else None

    @property
    def state(self) -> OvsdbState:
        return OvsdbState(frozenset(self.bridges.values()), frozenset(self.ports.values()))

    def read(self) -> OvsdbState:
        self._check()
        self.full_reads += 1
        return self.state

    def apply(self, plan: RowPlan) -> int:
        self._check()
        for c in plan.bridges:
            old = self.bridges.get(c.row.name)
            cols = dict(c.columns)
            if "other_config" in cols:
                cols["other_config"] = tuple(sorted(cols["other_config"].items()))
            if "protocols" in cols:
                cols["protocols"] = tuple(cols["protocols"])
            ids = dict(old.external_ids if old else ()) | cols.pop("external_ids", {})
            cols["external_ids"] = tuple(sorted((k, v) for k, v in ids.items()
                                                if k not in c.remove_ids))
            row = (old or c.row._replace(other_config=(), controller=None))._replace(**cols)
            self.bridges[c.row.name] = row._replace(controller=c.row.controller) \
                if c.controller else row
        for c in plan.tunnels + plan.ports:
            key = (c.row.bridge, c.row.name)
            cols = dict(c.columns)
            old = self.ports.get(key)
            ids = {**dict(old.external_ids if old else ()), **cols.pop("external_ids", {})}
            row = (old or PortRow(c.row.bridge, c.row.name))._replace(
                type=cols["type"], options=tuple(sorted(cols["options"].items())),
                external_ids=tuple(sorted(ids.items())),
                ofport_request=cols.get("ofport_request"))
            self.ports[key] = row
        for key in plan.delete_ports:
            self.ports.pop(key, None)
        self.writes += not plan.empty
        return len(plan.bridges) + len(plan.tunnels) + len(plan.ports) + len(plan.delete_ports)

    def port_errors(self, names: set[str]) -> dict[str, str]:
        return {}


class FakeNodeOvsdb:
    """What a node's QoS pass (host/qos.py) reads and writes of its hypervisor's OVSDB:
    br-int's QoS word and the Open_vSwitch row's external_ids, where it reports."""

    endpoint = "unix:/fake/node.sock"

    def __init__(self, specs: str = "{}"):
        self.specs = specs  # br-int's external_ids:netvirt-qos
        self.ids: dict[str, str] = {}
        self.writes = 0

    def qos_specs(self) -> str | None:
        return self.specs

    def external_ids(self) -> dict[str, str]:
        return dict(self.ids)

    def set_external_ids(self, changes: dict[str, str]) -> None:
        self.ids.update(changes)
        self.writes += 1
