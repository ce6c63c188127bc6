"""What to write to a hypervisor's OVSDB to make it hold the desired rows: a pure function.

Only rows netvirt owns are ever deleted (ports on br-int with external_ids netvirt-owned
=true); keys of other_config and external_ids that netvirt does not declare are others'
(libvirt sets vm-uuid and iface-status on a guest's tap) and are neither removed nor a reason
to write a row; a port someone else made with the VM port's iface-id is adopted as it is.  The driver turns a RowPlan into ovsdbapp commands, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

from netvirt.pipeline.layout import INT_BRIDGE
from netvirt.pipeline.rows import OWNED_BRIDGE_IDS, OWNER_KEY, BridgeRow, OvsdbState, PortRow


@dataclass(frozen=True)
class BridgeChange:
    row: BridgeRow
    create: bool
    columns: tuple = ()  # ((column, value), ...) to set on the Bridge row
    controller: bool = False  # (re)point the bridge at row.controller
    remove_ids: tuple[str, ...] = ()  # netvirt's external_ids keys the row no longer wants


@dataclass(frozen=True)
class PortChange:
    row: PortRow
    create: bool  # add the port (and its interface) with these columns
    columns: tuple = ()  # ((column, value), ...) of the Interface; maps merge with others'


@dataclass(frozen=True)
class RowPlan:
    """Two transactions' worth: bridges and the tunnel first, so that the switch connects
    and gets its flows while ovs-vswitchd is still creating (possibly thousands of) VM
    ports; then the VM ports and the deletions."""

    bridges: tuple[BridgeChange, ...] = ()
    tunnels: tuple[PortChange, ...] = ()
    ports: tuple[PortChange, ...] = ()
    delete_ports: tuple[tuple[str, str], ...] = ()  # (bridge, name)

    @property
    def empty(self) -> bool:
        return not (self.bridges or self.tunnels or self.ports or self.delete_ports)


def _bridge_change(want: BridgeRow, have: BridgeRow | None) -> BridgeChange | None:
    cols = []
    if have is None or have.datapath_type != want.datapath_type:
        cols.append(("datapath_type", want.datapath_type))
    if have is None or have.fail_mode != want.fail_mode:
        cols.append(("fail_mode", want.fail_mode))
    if want.protocols and (have is None or have.protocols != want.protocols):
        cols.append(("protocols", list(want.protocols)))
    other = dict(have.other_config) if have else {}
    if any(other.get(k) != v for k, v in want.other_config):
        cols.append(("other_config", {**other, **dict(want.other_config)}))
    ids = dict(have.external_ids) if have else {}
    if any(ids.get(k) != v for k, v in want.external_ids):
        cols.append(("external_ids", dict(want.external_ids)))  # merged: others' keys stay
    wanted = {k for k, _ in want.external_ids}
    remove = tuple(sorted(k for k in ids if k in OWNED_BRIDGE_IDS and k not in wanted))
    controller = bool(want.controller) and (have is None or have.controller != want.controller)
    if have is not None and not cols and not controller and not remove:
        return None
    return BridgeChange(want, have is None, tuple(cols), controller, remove)


def same_port(have: PortRow, want: PortRow) -> bool:
    """``have`` is what ``want`` asks for: others' external_ids do not count."""
    ids = dict(have.external_ids)
    return (have._replace(external_ids=()) == want._replace(external_ids=())
            and all(ids.get(k) == v for k, v in want.external_ids))


def adopted(have: PortRow, want: PortRow) -> bool:
    """A port someone else made for this VM port (libvirt adds a guest's tap to br-int with
    external_ids:iface-id): bound by its iface-id, as OVN binds, and not netvirt's to write
    or delete.  Writing netvirt's keys into it would cost a reconfiguration of the whole
    bridge by ovs-vswitchd for nothing the flows need."""
    ids, iface_id = dict(have.external_ids), dict(want.external_ids).get("iface-id")
    return (iface_id is not None and ids.get("iface-id") == iface_id
            and ids.get(OWNER_KEY) != "true")


def _port_columns(p: PortRow) -> tuple:
    cols = [("type", p.type), ("options", dict(p.options)),
            ("external_ids", dict(p.external_ids))]
    if p.ofport_request is not None:
        cols.append(("ofport_request", p.ofport_request))
    return tuple(cols)


def plan_rows(desired: OvsdbState, actual: OvsdbState) -> RowPlan:
    have_br = {b.name: b for b in actual.bridges}
    have_port = {(p.bridge, p.name): p for p in actual.ports}
    bridges = [c for b in sorted(desired.bridges)
               if (c := _bridge_change(b, have_br.get(b.name))) is not None]
    tunnels, ports = [], []
    for p in sorted(desired.ports):
        cur = have_port.get((p.bridge, p.name))
        if cur is not None and (same_port(cur, p) or adopted(cur, p)):
            continue
        change = PortChange(p, cur is None, _port_columns(p))
        (tunnels if p.type == "vxlan" else ports).append(change)
    wanted = {(p.bridge, p.name) for p in desired.ports}
    delete = [(bridge, name) for (bridge, name), p in sorted(have_port.items())
              if bridge == INT_BRIDGE and (bridge, name) not in wanted
              and dict(p.external_ids).get(OWNER_KEY) == "true"]
    return RowPlan(tuple(bridges), tuple(tunnels), tuple(ports), tuple(delete))
