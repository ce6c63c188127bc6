"""OVSDB driver for one hypervisor (ovsdbapp): read bridges/ports, apply the difference.

Idempotent by construction: it reads the IDL cache, builds only the commands for what
differs, and commits them in one transaction (check_error=True), so a restart with unchanged
intent writes nothing.  Keys of other_config/external_ids that netvirt does not declare are
left alone; ports on br-int are deleted only if netvirt created them (netvirt-owned=true).
"""
from __future__ import annotations

import logging

from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from netvirt.controller.ovsdb_state import INT_BRIDGE, OWNER_KEY, BridgeRow, OvsdbState, PortRow
from netvirt.errors import ControllerError

log = logging.getLogger(__name__)
# Open_vSwitch external_ids that the hypervisor's own provisioning sets (the lab does)
DATAPATH_HINT_KEY = "netvirt-datapath-type"
KERNEL_QDISCS_KEY = "netvirt-kernel-qdiscs"  # e.g. "htb,tbf": no netem there
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
            raise ControllerError(f"cannot connect to OVSDB at {self.endpoint}: {e}; is "
                                  f"ovsdb-server running there?") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.stop(timeout=2)
        self.api = self._conn = None

    def _external_id(self, key: str) -> str | None:
        for row in self.api.tables["Open_vSwitch"].rows.values():
            return row.external_ids.get(key)
        return None

    def datapath_hint(self) -> str | None:
        return self._external_id(DATAPATH_HINT_KEY)

    def kernel_qdiscs(self) -> list[str] | None:
        value = self._external_id(KERNEL_QDISCS_KEY)
        return None if value is None else [q for q in value.split(",") if q]

    def read(self) -> OvsdbState:
        bridges, ports = set(), set()
        for br in self.api.tables["Bridge"].rows.values():
            bridges.add(BridgeRow(
                br.name, br.datapath_type, (br.fail_mode or [""])[0], tuple(sorted(br.protocols)),
                tuple(sorted(br.other_config.items())),
                br.controller[0].target if br.controller else None))
            for port in br.ports:
                for iface in port.interfaces:
                    ports.add(PortRow(br.name, iface.name, iface.type,
                                      tuple(sorted(iface.options.items())),
                                      tuple(sorted(iface.external_ids.items())),
                                      (iface.ofport_request or [None])[0]))
        return OvsdbState(frozenset(bridges), frozenset(ports))

    def apply(self, desired: OvsdbState, actual: OvsdbState | None = None) -> int:
        """Make the switch match ``desired``; return the number of commands sent.  ``actual``
        is what OVSDB is believed to hold (our last write); None reads every row."""
        actual = self.read() if actual is None else actual
        have_br = {b.name: b for b in actual.bridges}
        have_port = {(p.bridge, p.name): p for p in actual.ports}
        # Two transactions: bridges and the tunnel first, so the switch connects and gets
        # its flows while ovs-vswitchd is still creating (possibly thousands of) VM ports.
        infra, ports = [], []
        api = self.api
        for b in sorted(desired.bridges):
            cur = have_br.get(b.name)
            if cur is None:
                infra.append(api.add_br(b.name, may_exist=True, datapath_type=b.datapath_type))
            cols = []
            if cur is None or cur.datapath_type != b.datapath_type:
                cols.append(("datapath_type", b.datapath_type))
            if cur is None or cur.fail_mode != b.fail_mode:
                cols.append(("fail_mode", b.fail_mode))
            if b.protocols and (cur is None or cur.protocols != b.protocols):
                cols.append(("protocols", list(b.protocols)))
            other = dict(cur.other_config) if cur else {}
            if any(other.get(k) != v for k, v in b.other_config):
                cols.append(("other_config", {**other, **dict(b.other_config)}))
            if cols:
                infra.append(api.db_set("Bridge", b.name, *cols))
            if b.controller and (cur is None or cur.controller != b.controller):
                infra.append(api.set_controller(b.name, [b.controller]))
                infra.append(api.db_set("Controller", b.name,
                                       ("max_backoff", CONTROLLER_MAX_BACKOFF_MS)))
        for p in sorted(desired.ports):
            # the tunnel goes with the bridges; VM ports, possibly thousands, after them
            target = infra if p.type == "vxlan" else ports
            cur = have_port.get((p.bridge, p.name))
            if cur is not None and _same_port(cur, p):
                continue
            # a map given to db_set is merged into the row's: others' keys stay
            cols = {"type": p.type, "options": dict(p.options),
                    "external_ids": dict(p.external_ids)}
            if p.ofport_request is not None:
                cols["ofport_request"] = p.ofport_request
            if cur is None:  # one command makes the port and its interface, columns and all
                target.append(api.add_port(p.bridge, p.name, may_exist=True, **cols))
            else:
                target.append(api.db_set("Interface", p.name, *cols.items()))
        wanted = {(p.bridge, p.name) for p in desired.ports}
        for (bridge, name), p in sorted(have_port.items()):
            if bridge == INT_BRIDGE and (bridge, name) not in wanted and \
                    dict(p.external_ids).get(OWNER_KEY) == "true":
                ports.append(api.del_port(name, bridge=bridge, if_exists=True))
        for cmds in (infra, ports):
            if cmds:
                with api.transaction(check_error=True) as txn:
                    for c in cmds:
                        txn.add(c)
        return len(infra) + len(ports)

    def port_errors(self, names: set[str]) -> dict[str, str]:
        """Interfaces among ``names`` that OVS could not open (ofport -1), with its reason.
        One whose ofport is not assigned yet is not an error (yet)."""
        errors = {}
        for name in names:  # by the IDL's name index: a few ports cost a few lookups
            iface = idlutils.row_by_value(self.api.idl, "Interface", "name", name, None)
            if iface is not None and (iface.ofport or [None])[0] == -1:
                errors[name] = (iface.error or ["unknown error"])[0]
        return errors


def _same_port(have: PortRow, want: PortRow) -> bool:
    """``have`` is what ``want`` asks for; external_ids others set (libvirt sets vm-uuid and
    iface-status on a guest's tap) are theirs, and no reason to write the row again."""
    ids = dict(have.external_ids)
    return (have._replace(external_ids=()) == want._replace(external_ids=())
            and all(ids.get(k) == v for k, v in want.external_ids))
