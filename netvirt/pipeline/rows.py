"""OVSDB rows netvirt owns on a hypervisor: records, as flows are.

Rows are named tuples: every agent builds and compares its hypervisor's rows on every
revision, and tuples are built, hashed and compared in C."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

OWNER_KEY = "netvirt-owned"  # external_ids key on every port netvirt created
EXTERNAL_KEY = "netvirt-external"  # on the port of an external network: its name
# br-int's external_ids: a MAC learned on an external network, kept across restarts:
# NEIGHBOUR_PREFIX + "VNI-IP" -> MAC
NEIGHBOUR_PREFIX = "netvirt-neighbour-"

# What a hypervisor's node agent (netvirt node) reports in its own OVSDB, as
# Open_vSwitch:external_ids, for the controller to read: its kernel's facts.
DATAPATH_HINT_KEY = "netvirt-datapath-type"  # netdev where the kernel has no OVS module
KERNEL_QDISCS_KEY = "netvirt-kernel-qdiscs"  # e.g. "htb,tbf": no netem there
NODE_KEY = "netvirt-node"  # the version of the node agent that reported
# What the node reports of its VM devices' tc (JSON: interface -> what the kernel holds)
QOS_STATE_KEY = "netvirt-qos-state"
# br-int's external_ids: the to_vm QoS of this hypervisor's VM devices, for its node agent
# (JSON, topology/qos.py).  Keys netvirt owns on a bridge: absent from the desired row,
# they are removed.
QOS_KEY = "netvirt-qos"
OWNED_BRIDGE_IDS = frozenset({QOS_KEY})


class BridgeRow(NamedTuple):
    name: str
    datapath_type: str
    fail_mode: str
    protocols: tuple = ()
    other_config: tuple = ()  # ((key, value), ...): keys netvirt sets; others are left alone
    controller: str | None = None
    external_ids: tuple = ()  # ((key, value), ...) of OWNED_BRIDGE_IDS


class PortRow(NamedTuple):
    bridge: str
    name: str
    type: str = ""  # "" = a system device (tap/veth) that already exists on the host
    options: tuple = ()
    external_ids: tuple = ()
    ofport_request: int | None = None


@dataclass(frozen=True)
class OvsdbState:
    bridges: frozenset
    ports: frozenset
