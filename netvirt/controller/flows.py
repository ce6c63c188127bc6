"""Flow, group and action records: frozen, hashable, compared by value.

Compilers return these; only netvirt.controller.ofcodec turns them into os-ken messages.

Cookie layout (64 bits): the high 32 bits identify the flow's origin (a hash of the origin
string, e.g. "tenant/blue/port/web1"), the low 32 bits are a digest of the flow's content.
A flow read back from a switch is therefore identified exactly by (table, priority, cookie)
without decoding its actions, and the origin half leads a dump or a trace back to the YAML.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from netvirt.controller.pipeline import Table

MatchValue = int | str | tuple  # tuple = (value, mask)


def _h32(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


@lru_cache(maxsize=1 << 16)
def origin_id(origin: str) -> int:
    return _h32(origin)


@dataclass(frozen=True, order=True, repr=False)
class Output:
    port: int | str  # an ofport, or "IN_PORT"

    def __str__(self) -> str:
        return f"output:{self.port}"


@dataclass(frozen=True, order=True, repr=False)
class SetField:
    field: str
    value: int | str

    def __str__(self) -> str:
        return f"set_field:{_fmt_value(self.field, self.value)}->{self.field}"


@dataclass(frozen=True, order=True, repr=False)
class Move:
    src: str
    dst: str
    n_bits: int

    def __str__(self) -> str:
        return f"move:{self.src}->{self.dst}"


@dataclass(frozen=True, order=True, repr=False)
class GroupAction:
    group_id: int

    def __str__(self) -> str:
        return f"group:{self.group_id:#x}"


@dataclass(frozen=True, order=True, repr=False)
class WriteMetadata:
    value: int
    mask: int

    def __str__(self) -> str:
        return f"write_metadata:{self.value:#x}/{self.mask:#x}"


@dataclass(frozen=True, order=True, repr=False)
class Goto:
    table: Table

    def __str__(self) -> str:
        return f"goto:{self.table.name}"


Action = Output | SetField | Move | GroupAction | WriteMetadata | Goto

# An action's repr is its ovs-ofctl-like text: unambiguous, and it is what the cookie's
# content digest hashes (dataclasses' generated repr costs 3x as much at 10k ports).
for _cls in (Output, SetField, Move, GroupAction, WriteMetadata, Goto):
    _cls.__repr__ = _cls.__str__


_HEX_FIELDS = {"metadata", "tunnel_id", "eth_type"}


def _fmt_value(field: str, v) -> str:
    if isinstance(v, tuple):
        return f"{_fmt_value(field, v[0])}/{_fmt_value(field, v[1])}"
    return hex(v) if isinstance(v, int) and field in _HEX_FIELDS else str(v)


def format_match(match: tuple) -> str:
    return ",".join(f"{k}={_fmt_value(k, v)}" for k, v in match) or "any"


def format_actions(actions: tuple) -> str:
    return ",".join(str(a) for a in actions) or "drop"


@dataclass(frozen=True, order=True)
class Flow:
    table: Table
    priority: int
    match: tuple  # sorted ((field, value), ...), field names as in os-ken's OFPMatch
    actions: tuple = ()  # empty = drop
    origin: str = field(default="", compare=False)

    @staticmethod
    def make(table: Table, priority: int, match: dict, actions, origin: str) -> "Flow":
        return Flow(table, priority, tuple(sorted(match.items())), tuple(actions), origin)

    def __post_init__(self):
        # Computed once: diffs, mirrors and status look at every flow's key on every pass.
        table = int(self.table)
        content = f"{table}|{self.priority}|{self.match!r}|{self.actions!r}"
        cookie = (origin_id(self.origin) << 32) | _h32(content)
        object.__setattr__(self, "cookie", cookie)
        # what identifies this exact flow on a switch
        object.__setattr__(self, "key", (table, self.priority, cookie))
        # what an ADD of this flow overwrites on a switch (OpenFlow's identity of a flow)
        object.__setattr__(self, "slot", (table, self.priority, self.match))

    def __str__(self) -> str:
        return (f"{self.table.name:<14} prio={self.priority:<4} {format_match(self.match)} "
                f"actions={format_actions(self.actions)}  [{self.origin}]")


@dataclass(frozen=True, order=True)
class Group:
    """An ALL group.  Its id is derived from its content, so a changed group is a new group:
    flows that use it change with it, and a group is never modified in place."""

    buckets: tuple  # tuple of action tuples
    origin: str = field(default="", compare=False)

    @cached_property
    def group_id(self) -> int:
        return _h32(f"{self.buckets!r}") & 0x7FFFFFFF or 1

    def __str__(self) -> str:
        b = " | ".join(format_actions(a) for a in self.buckets)
        return f"group {self.group_id:#x} all: {b}  [{self.origin}]"
