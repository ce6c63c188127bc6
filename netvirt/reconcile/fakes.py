"""In-memory stand-ins for a switch and an OVSDB server, behind the driver Protocols.

They keep state the way the real ones do (a flow table keyed like OVS's, ofports assigned
as interfaces are added), so the reconciler's behaviour — restart with zero flow mods,
repair, deletes of foreign flows — is tested without root.  They do not stand in for the
component under test: the agent, compilers and diff are real."""
from __future__ import annotations

from netvirt.controller.ovsdb_state import OvsdbState
from netvirt.reconcile.diff import InstalledFlow, Plan


class FakeSwitch:
    def __init__(self, ofports: dict[str, int] | None = None):
        self.flows: dict[tuple, InstalledFlow] = {}  # (table, priority, match) -> flow
        self.groups: set[int] = set()
        self.ofports = dict(ofports or {})
        self.flow_mods_sent = 0
        self.group_mods_sent = 0
        self.port_stats: dict[int, dict] = {}

    def read_flows(self) -> list[InstalledFlow]:
        return list(self.flows.values())

    def read_groups(self) -> set[int]:
        return set(self.groups)

    def read_ports(self) -> dict[str, tuple[int, bool]]:
        return {name: (ofport, True) for name, ofport in self.ofports.items()}

    def read_port_stats(self) -> dict[int, dict]:
        """Counters as a switch would report them; tests set ``port_stats``."""
        zero = dict.fromkeys(("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped",
                              "tx_dropped"), 0)
        return {p: {**zero, **self.port_stats.get(p, {})} for p in self.ofports.values()}

    def read_flow_counters(self, cookie: int, mask: int) -> list[tuple[int, int]]:
        return [(f.table, 0) for f in self.flows.values() if f.cookie & mask == cookie & mask]

    def apply(self, plan: Plan) -> None:
        self.groups |= {g.group_id for g in plan.add_groups}
        for f in plan.delete_flows:  # DELETE_STRICT with the exact cookie
            cur = self.flows.get((f.table, f.priority, f.match))
            if cur is not None and cur.cookie == f.cookie:
                del self.flows[(f.table, f.priority, f.match)]
        for f in plan.add_flows:  # ADD overwrites the same (table, priority, match)
            self.flows[(int(f.table), f.priority, f.match)] = InstalledFlow(
                int(f.table), f.priority, f.cookie, f.match)
        self.groups -= set(plan.delete_groups)
        self.flow_mods_sent += len(plan.delete_flows) + len(plan.add_flows)
        self.group_mods_sent += len(plan.add_groups) + len(plan.delete_groups)

    def abort(self, reason: str) -> None:
        pass


class FakeOvsdb:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.state: OvsdbState | None = None
        self.writes = 0
        self.full_reads = 0  # applies that compared with the database, not a believed state

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def datapath_hint(self) -> str | None:
        return "netdev"

    def kernel_qdiscs(self) -> list[str] | None:
        return ["htb", "tbf"]

    def apply(self, desired: OvsdbState, actual: OvsdbState | None = None) -> int:
        self.full_reads += actual is None
        if desired == self.state:
            return 0
        self.state = desired
        self.writes += 1
        return 1

    def port_errors(self, names: set[str]) -> dict[str, str]:
        return {}
