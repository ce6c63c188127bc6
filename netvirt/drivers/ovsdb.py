"""OVSDB driver for one hypervisor (ovsdbapp): read the rows netvirt cares about from the
IDL cache, and carry out a RowPlan (what to write is decided by reconcile.ovsdb_plan, a pure
function) in transactions with check_error=True.  Every failure is an OvsdbError."""
from __future__ import annotations

import logging

from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from netvirt.errors import OvsdbError
from netvirt.pipeline.layout import INT_BRIDGE
from netvirt.pipeline.rows import (DATAPATH_HINT_KEY, KERNEL_QDISCS_KEY, NEIGHBOUR_PREFIX, NODE_KEY,
                                   OWNED_BRIDGE_IDS, QOS_KEY, QOS_STATE_KEY, BridgeRow,
                                   OvsdbState, PortRow)
from netvirt.reconcile.ovsdb_plan import RowPlan

log = logging.getLogger(__name__)
CONTROLLER_MAX_BACKOFF_MS = 1000  # reconnect within a second after a controller restart


INTERFACE_COLUMNS = ["name", "type", "options", "external_ids", "ofport", "ofport_request",
                     "error", "link_state"]


class _Idl(connection.OvsdbIdl):
    def cooperative_yield(self):
        """ovsdbapp sleeps(0) after every row it parses, for eventlet's sake.  With native
        threads that hands the GIL away per row: parsing 10k new ports took seconds while
        the agents were busy.  The interpreter's own switch interval keeps threads fair."""


class _NoWaitTransaction(impl_idl.OvsVsctlTransaction):
    def do_post_commit(self, txn):
        """ovs-vsctl semantics wait until ovs-vswitchd has applied the commit; for 10k new
        ports that took longer than any sane timeout.  The agent does not need to wait: the
        switch reports each new port (PortStatus) and its flows follow it."""


class OvsdbDriver:
    def __init__(self, endpoint: str, timeout: float = 10.0):
        self.endpoint = endpoint
        self.timeout = timeout
        self.api = None
        self._conn = None

    def connect(self) -> None:
        if self.api is not None:
            return
        try:
            helper = idlutils.get_schema_helper(self.endpoint, "Open_vSwitch")
            for table in ("Open_vSwitch", "Bridge", "Controller"):
                helper.register_table(table)
            helper.register_columns("Port", ["name", "interfaces"])
            # Interface rows carry statistics that ovs-vswitchd rewrites every few seconds:
            # monitoring only what we read keeps 10k ports from flooding the IDL.
            helper.register_columns("Interface", INTERFACE_COLUMNS)
            idl = _Idl(self.endpoint, helper)
            self._conn = connection.Connection(idl=idl, timeout=self.timeout)
            # ovsdbapp keeps the connection in a *class* attribute: one subclass per
            # hypervisor, or every driver would talk to the first hypervisor's OVSDB.
            api_cls = type(f"OvsdbIdl_{id(self):x}", (impl_idl.OvsdbIdl,), {
                "create_transaction": lambda api, check_error=False, log_errors=True, **kw:
                    _NoWaitTransaction(api, api.ovsdb_connection, check_error=check_error,
                                       log_errors=log_errors)})
            self.api = api_cls(self._conn)
        except Exception as e:  # ovsdbapp raises a variety of types here
            self.api = None
            raise OvsdbError(f"cannot connect to OVSDB at {self.endpoint}: {e}; is "
                             f"ovsdb-server running there?") from None

    def connected(self) -> bool:
        """Whether the IDL's session is up now (it reconnects by itself in the background).
        python-ovs's Idl has no public call for it; its jsonrpc session does (ovsdbapp's
        own connection code reaches into idl._session the same way)."""
        return self._conn is not None and self._conn.idl._session.is_connected()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.stop(timeout=2)
        self.api = self._conn = None

    def external_ids(self) -> dict[str, str]:
        """The Open_vSwitch row's external_ids: where the node agent reports."""
        for row in self.api.tables["Open_vSwitch"].rows.values():
            return dict(row.external_ids)
        return {}

    def set_external_ids(self, changes: dict[str, str]) -> None:
        """Set these keys of the Open_vSwitch row's external_ids; the others stay."""
        self._commit([self.api.db_set("Open_vSwitch", ".", ("external_ids", changes))])

    def _external_id(self, key: str) -> str | None:
        return self.external_ids().get(key)

    def node_version(self) -> str | None:
        """The version of the node agent that last reported here; None: none has."""
        return self._external_id(NODE_KEY)

    def datapath_hint(self) -> str | None:
        return self._external_id(DATAPATH_HINT_KEY)

    def kernel_qdiscs(self) -> list[str] | None:
        value = self._external_id(KERNEL_QDISCS_KEY)
        return None if value is None else [q for q in value.split(",") if q]

    def qos_state(self) -> str | None:
        """What the node agent last reported of its devices' tc (JSON), or None."""
        return self._external_id(QOS_STATE_KEY)

    def qos_specs(self) -> str | None:
        """The to_vm QoS the controller wrote into br-int's external_ids (JSON), or None
        (none, or not connected yet)."""
        if self.api is None:
            return None
        for br in self.api.tables["Bridge"].rows.values():
            if br.name == INT_BRIDGE:
                return br.external_ids.get(QOS_KEY)
        return None

    def bridge_mac(self, name: str) -> str | None:
        """A bridge's other_config:hwaddr, or None (no such bridge, or no such key)."""
        for br in self.api.tables["Bridge"].rows.values():
            if br.name == name:
                return br.other_config.get("hwaddr")
        return None

    def saved_neighbours(self) -> dict[tuple[int, str], str]:
        """The MACs learned on external networks, as br-int's external_ids keep them."""
        out = {}
        for br in self.api.tables["Bridge"].rows.values():
            if br.name == INT_BRIDGE:
                for key, mac in br.external_ids.items():
                    if key.startswith(NEIGHBOUR_PREFIX):
                        vni, _, ip = key.removeprefix(NEIGHBOUR_PREFIX).partition("-")
                        out[int(vni), ip] = mac
        return out

    def save_neighbours(self, learned: dict[tuple[int, str], str]) -> None:
        """Keep learned MACs in br-int's external_ids (others' keys stay)."""
        self._commit([self.api.db_set("Bridge", INT_BRIDGE, ("external_ids", {
            f"{NEIGHBOUR_PREFIX}{vni}-{ip}": mac for (vni, ip), mac in learned.items()}))])

    def read(self) -> OvsdbState:
        bridges, ports = set(), set()
        for br in self.api.tables["Bridge"].rows.values():
            bridges.add(BridgeRow(
                br.name, br.datapath_type, (br.fail_mode or [""])[0], tuple(sorted(br.protocols)),
                tuple(sorted(br.other_config.items())),
                br.controller[0].target if br.controller else None,
                tuple(sorted((k, v) for k, v in br.external_ids.items()
                             if k in OWNED_BRIDGE_IDS))))
            for port in br.ports:
                for iface in port.interfaces:
                    ports.add(PortRow(br.name, iface.name, iface.type,
                                      tuple(sorted(iface.options.items())),
                                      tuple(sorted(iface.external_ids.items())),
                                      (iface.ofport_request or [None])[0]))
        return OvsdbState(frozenset(bridges), frozenset(ports))

    def apply(self, plan: RowPlan) -> int:
        """Carry out ``plan`` (reconcile.ovsdb_plan): bridges and the tunnel in one
        transaction, VM ports and deletions in a second; return the commands sent."""
        api = self.api
        infra, ports = [], []
        for c in plan.bridges:
            b = c.row
            if c.create:
                infra.append(api.add_br(b.name, may_exist=True, datapath_type=b.datapath_type))
            if c.columns:
                infra.append(api.db_set("Bridge", b.name, *c.columns))
            if c.remove_ids:
                infra.append(api.db_remove("Bridge", b.name, "external_ids", *c.remove_ids))
            if c.controller:
                infra.append(api.set_controller(b.name, [b.controller]))
                infra.append(api.db_set("Controller", b.name,
                                       ("max_backoff", CONTROLLER_MAX_BACKOFF_MS)))
        for target, changes in ((infra, plan.tunnels), (ports, plan.ports)):
            for c in changes:
                if c.create:  # one command makes the port and its interface, columns and all
                    target.append(api.add_port(c.row.bridge, c.row.name, may_exist=True,
                                               **dict(c.columns)))
                else:  # a map given to db_set is merged into the row's: others' keys stay
                    target.append(api.db_set("Interface", c.row.name, *c.columns))
        ports += [api.del_port(name, bridge=bridge, if_exists=True)
                  for bridge, name in plan.delete_ports]
        for cmds in (infra, ports):
            if cmds:
                self._commit(cmds)
        return len(infra) + len(ports)

    def _commit(self, cmds: list) -> None:
        try:
            with self.api.transaction(check_error=True) as txn:
                for c in cmds:
                    txn.add(c)
        except Exception as e:  # ovsdbapp raises its own, RuntimeError and timeouts
            raise OvsdbError(f"OVSDB at {self.endpoint}: a transaction of {len(cmds)} "
                             f"command(s) failed: {type(e).__name__}: {e}; is ovsdb-server "
                             f"running there?") from None

    def readd_port(self, row: PortRow) -> None:
        """Delete a port and add it again as ``row``, in two transactions: ovs-vswitchd then
        closes its device and opens the one of that name now (in one transaction the two
        would cancel out)."""
        self._commit([self.api.del_port(row.name, bridge=row.bridge, if_exists=True)])
        cols = {"type": row.type, "options": dict(row.options),
                "external_ids": dict(row.external_ids)}
        if row.ofport_request is not None:
            cols["ofport_request"] = row.ofport_request
        self._commit([self.api.add_port(row.bridge, row.name, may_exist=True, **cols)])

    def ofports(self, names) -> dict[str, int]:
        """The ofport of each of these Interfaces that has one assigned (-1: could not be
        opened)."""
        found = {}
        for name in names:
            iface = idlutils.row_by_value(self.api.idl, "Interface", "name", name, None)
            if iface is not None and iface.ofport:
                found[name] = iface.ofport[0]
        return found

    def port_errors(self, names: set[str]) -> dict[str, str]:
        """Interfaces among ``names`` that OVS could not open (ofport -1), with its reason.
        One whose ofport is not assigned yet is not an error (yet)."""
        errors = {}
        for name in names:  # by the IDL's name index: a few ports cost a few lookups
            iface = idlutils.row_by_value(self.api.idl, "Interface", "name", name, None)
            if iface is not None and (iface.ofport or [None])[0] == -1:
                errors[name] = (iface.error or ["unknown error"])[0]
        return errors
