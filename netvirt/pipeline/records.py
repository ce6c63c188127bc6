"""Flow, group, meter and action records: frozen, hashable, compared by value.

Compilers return these; only netvirt.drivers.ofcodec turns them into os-ken messages.

Cookie layout (64 bits): the high 32 bits identify the flow's origin (a hash of its first
origin, e.g. "tenant/blue/port/web1"), the low 32 bits are a digest of the flow's canonical
encoding: the table's *id*, priority, match, each action's canonical tuple and the other
origins.  Nothing a person reads takes part: renaming a table or changing how a flow prints
changes no cookie (tests/unit/test_pipeline.py pins golden cookies).  A flow read back from a
switch is identified exactly by (table, priority, cookie) without decoding its actions, and
the origin half leads a dump or a trace back to the YAML.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache, total_ordering

from netvirt.pipeline.layout import REG_AFFINE
from netvirt.pipeline.tables import Table

MatchValue = int | str | tuple  # tuple = (value, mask)
PIPELINE_ORIGIN = "pipeline"  # the stages' own flows: misses, fixed drops


def h32(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


@lru_cache(maxsize=1 << 16)
def origin_id(origin: str) -> int:
    return h32(origin)


def _action(cls):
    """An action record: frozen, ordered, its repr its ovs-ofctl-like text (dataclasses'
    generated repr costs 3x as much), and ``canon`` the tuple its digest is made of."""
    cls = dataclass(frozen=True, order=True, repr=False)(cls)
    cls.__repr__ = cls.__str__
    return cls


@_action
class Output:
    port: int | str  # an ofport, "IN_PORT" or "CONTROLLER"

    def __str__(self) -> str:
        return f"output:{self.port}"

    def canon(self) -> tuple:
        return ("output", self.port)


@_action
class OutputReg:
    """Output to the port held in a register (NXAST_OUTPUT_REG)."""

    field: str

    def __str__(self) -> str:
        return f"output:{self.field}"

    def canon(self) -> tuple:
        return ("output_reg", self.field)


@_action
class SetField:
    field: str
    value: int | str

    def __str__(self) -> str:
        return f"set_field:{fmt_value(self.field, self.value)}->{self.field}"

    def canon(self) -> tuple:
        return ("set_field", self.field, self.value)


@_action
class Move:
    src: str
    dst: str
    n_bits: int

    def __str__(self) -> str:
        return f"move:{self.src}->{self.dst}"

    def canon(self) -> tuple:
        return ("move", self.src, self.dst, self.n_bits)


@_action
class GroupAction:
    group_id: int

    def __str__(self) -> str:
        return f"group:{self.group_id:#x}"

    def canon(self) -> tuple:
        return ("group", self.group_id)


@_action
class DecTtl:
    """Decrement the IPv4 TTL; OVS drops a packet whose TTL runs out."""

    def __str__(self) -> str:
        return "dec_ttl"

    def canon(self) -> tuple:
        return ("dec_ttl",)


@_action
class ClearInPort:
    """Forget the port the packet came in on (OVS loads in_port with 0), so that it may
    leave by that same port: an answer the pipeline routes back to its asker.  OpenFlow
    otherwise drops an output to the ingress port (OVN's flags.loopback)."""

    def __str__(self) -> str:
        return "load:0->in_port"

    def canon(self) -> tuple:
        return ("clear_in_port",)


@_action
class Resubmit:
    """Run ``table`` and come back: the next action sees what it changed (NXAST_RESUBMIT).
    Unlike a goto, it may run in a group bucket and once per copy."""

    table: Table

    def __str__(self) -> str:
        return f"resubmit(,{self.table.name})"

    def canon(self) -> tuple:
        return ("resubmit", int(self.table))


@_action
class NAT:
    """ct's nat: ``kind`` "src" or "dst" with an address range (and port range) translates a
    new connection; "" alone undoes the translation of an established one."""

    kind: str = ""
    ip_min: str | None = None
    ip_max: str | None = None
    port_min: int | None = None
    port_max: int | None = None

    def __str__(self) -> str:
        if not self.kind:
            return "nat"
        addr = self.ip_min + (f"-{self.ip_max}" if self.ip_max else "")
        ports = (f":{self.port_min}" + (f"-{self.port_max}" if self.port_max else "")
                 if self.port_min else "")
        return f"nat({self.kind}={addr}{ports})"

    def canon(self) -> tuple:
        return ("nat", self.kind, self.ip_min, self.ip_max, self.port_min, self.port_max)


@_action
class Conjunction:
    """This flow is clause ``clause`` (1-based) of ``n_clauses`` of conjunctive match
    ``conj_id``: the match is met when one flow of every clause matches, and then the flow
    matching conj_id=``conj_id`` runs (OVS's conjunction, NXAST_CONJUNCTION).  A flow with
    conjunctions has no other actions."""

    conj_id: int
    clause: int
    n_clauses: int

    def __str__(self) -> str:
        return f"conjunction({self.conj_id:#x},{self.clause}/{self.n_clauses})"

    def canon(self) -> tuple:
        return ("conjunction", self.conj_id, self.clause, self.n_clauses)


@_action
class CT:
    """Send the packet through conntrack in ``zone``: a number, or a register's name (its
    low 16 bits are the zone).  ``commit`` records the connection; ``table`` recirculates a
    copy there with ct_state set (None: no recirculation); ``nat`` translates; ``mark`` is
    stored with a committed connection."""

    commit: bool = False
    zone: int | str = 0
    table: Table | None = None
    nat: NAT | None = None
    mark: int | None = None

    def __str__(self) -> str:
        parts = ["commit"] if self.commit else []
        parts.append(f"zone={self.zone}" if isinstance(self.zone, int)
                     else f"zone={self.zone}[0..15]")
        if self.table is not None:
            parts.append(f"table={self.table.name}")
        if self.mark is not None:
            parts.append(f"exec(set_field:{self.mark:#x}->ct_mark)")
        if self.nat is not None:
            parts.append(str(self.nat))
        return f"ct({','.join(parts)})"

    def canon(self) -> tuple:
        return ("ct", self.commit, self.zone, None if self.table is None else int(self.table),
                None if self.nat is None else self.nat.canon(), self.mark)


@_action
class Learn:
    """Add a flow to ``table`` made from this packet, or refresh the one it made before
    (NXAST_LEARN).  It matches each of ``matches``, (field, bits, value): the value given,
    or with None the packet's own; it loads each of ``loads``, (field, bits, value); it
    lapses ``idle_timeout`` seconds after it last matched.  ``cookie`` leads it back to its
    origin.  OVS checks the learned match's prerequisites as it reads the specs, so eth_type
    and ip_proto come first and with values (a copied one is unknown at that time).
    What a flow's learns made goes when the last flow with a learn of that cookie and table
    goes (OVS's delete_learned, which counts flows only: a learn in a group bucket would
    leave its flows behind)."""

    table: Table
    priority: int
    idle_timeout: int
    cookie: int
    matches: tuple  # ((field, n_bits, int value or None: the packet's), ...)
    loads: tuple  # ((field, n_bits, int value), ...)

    def __str__(self) -> str:
        specs = [f"{f}[0..{n - 1}]" if v is None else f"{f}={v:#x}"
                 for f, n, v in self.matches]
        specs += [f"load:{v:#x}->{f}" for f, _, v in self.loads]
        return (f"learn(table={self.table.name},priority={self.priority},"
                f"idle_timeout={self.idle_timeout},delete_learned,cookie={self.cookie:#x},"
                f"{','.join(specs)})")

    def canon(self) -> tuple:
        return ("learn", int(self.table), self.priority, self.idle_timeout, self.cookie,
                self.matches, self.loads)


# Instructions, not actions, in OpenFlow: the codec places them; the order in a flow's
# actions tuple does not matter for these three.
@_action
class WriteMetadata:
    value: int
    mask: int

    def __str__(self) -> str:
        return f"write_metadata:{self.value:#x}/{self.mask:#x}"

    def canon(self) -> tuple:
        return ("write_metadata", self.value, self.mask)


@_action
class Goto:
    table: Table

    def __str__(self) -> str:
        return f"goto:{self.table.name}"

    def canon(self) -> tuple:
        return ("goto", int(self.table))


@_action
class MeterAction:
    """Pass the packet through meter ``meter_id`` first (OpenFlow 1.3 meter instruction)."""

    meter_id: int

    def __str__(self) -> str:
        return f"meter:{self.meter_id}"

    def canon(self) -> tuple:
        return ("meter", self.meter_id)


Action = (Output | OutputReg | SetField | Move | GroupAction | DecTtl | ClearInPort | Resubmit
          | Conjunction | CT | Learn | WriteMetadata | Goto | MeterAction)
INSTRUCTIONS = (WriteMetadata, Goto, MeterAction)


@lru_cache(maxsize=1 << 16)
def canon_actions(actions: tuple) -> tuple:
    return tuple(a.canon() for a in actions)


@lru_cache(maxsize=1 << 16)
def _canon_text(actions: tuple) -> str:
    """The actions' part of a flow's digest; most flows share their action list."""
    return repr(canon_actions(actions))


def jump_targets(actions) -> list[Table]:
    """The tables a flow's (or a bucket's) actions may continue in."""
    out = []
    for a in actions:
        if isinstance(a, (Goto, Resubmit)):
            out.append(a.table)
        elif isinstance(a, CT) and a.table is not None:
            out.append(a.table)
    return out


_HEX_FIELDS = {"metadata", "tunnel_id", "eth_type", "ct_state", "ct_mark", "conj_id", REG_AFFINE}


def fmt_value(field: str, v) -> str:
    if isinstance(v, tuple):
        return f"{fmt_value(field, v[0])}/{fmt_value(field, v[1])}"
    return hex(v) if isinstance(v, int) and field in _HEX_FIELDS else str(v)


def format_match(match: tuple) -> str:
    return ",".join(f"{k}={fmt_value(k, v)}" for k, v in match) or "any"


def format_actions(actions: tuple) -> str:
    return ",".join(str(a) for a in actions) or "drop"


@total_ordering
@dataclass(frozen=True, eq=True)
class Flow:
    table: Table
    priority: int
    match: tuple  # sorted ((field, value), ...), field names as in os-ken's OFPMatch
    actions: tuple = ()  # empty = drop
    origins: tuple[str, ...] = ()  # sorted; the first names the cookie's high half

    @staticmethod
    def make(table: Table, priority: int, match: dict, actions, origin: str) -> "Flow":
        return Flow(table, priority, tuple(sorted(match.items())), tuple(actions), (origin,))

    def __post_init__(self):
        # Computed once: diffs, mirrors and status look at every flow's key on every pass.
        table, priority = int(self.table), self.priority
        canon = (f"{table}|{priority}|{self.match!r}|{_canon_text(self.actions)}|"
                 f"{self.origins[1:]!r}")
        cookie = (origin_id(self.origins[0] if self.origins else "") << 32) | h32(canon)
        self.__dict__.update(  # frozen: set once, here
            cookie=cookie,
            key=(table, priority, cookie),  # what identifies this exact flow on a switch
            # what an ADD of this flow overwrites on a switch (OpenFlow's identity of a flow)
            slot=(table, priority, self.match),
            # a total order over any flows: a masked and an exact value of one field compare
            _order=(table, priority, canon))

    @property
    def origin(self) -> str:
        return self.origins[0] if self.origins else ""

    def merged(self, other: "Flow") -> "Flow":
        """This flow wanted by the origins of both: same content, both origins kept."""
        return Flow(self.table, self.priority, self.match, self.actions,
                    tuple(sorted(set(self.origins) | set(other.origins))))

    def __lt__(self, other: "Flow") -> bool:
        return self._order < other._order

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return (f"{self.table.name:<14} prio={self.priority:<4} {format_match(self.match)} "
                f"actions={format_actions(self.actions)}  [{', '.join(self.origins)}]")


@dataclass(frozen=True)
class Group:
    """An ALL group (every bucket gets a copy) or a SELECT group (one bucket per flow,
    chosen by weight).  Its id is derived from its kind and content, so a changed group is
    a new group: flows that use it change with it, and a group is never modified in place."""

    buckets: tuple  # tuple of action tuples
    origin: str = field(default="", compare=False)
    kind: str = "all"  # or "select"
    weights: tuple[int, ...] = ()  # select: one per bucket

    def __post_init__(self):
        if self.kind not in ("all", "select"):
            raise ValueError(f"group kind {self.kind!r}: 'all' or 'select'")
        if self.kind == "select" and len(self.weights) != len(self.buckets):
            raise ValueError("a select group needs one weight per bucket")
        canon = repr((self.kind, self.weights, tuple(canon_actions(b) for b in self.buckets)))
        object.__setattr__(self, "group_id", h32(canon) & 0x7FFFFFFF or 1)

    def __str__(self) -> str:
        if self.kind == "select":
            b = " | ".join(f"weight={w}:{format_actions(a)}"
                           for w, a in zip(self.weights, self.buckets, strict=True))
        else:
            b = " | ".join(format_actions(a) for a in self.buckets)
        return f"group {self.group_id:#x} {self.kind}: {b}  [{self.origin}]"


@dataclass(frozen=True, order=True)
class Meter:
    """An OpenFlow meter with one drop band: packets (unit "pktps") or kilobits ("kbps")
    per second above ``rate`` (with ``burst``) are dropped."""

    meter_id: int
    rate: int
    burst: int = 0
    unit: str = "pktps"
    origin: str = field(default="", compare=False)

    def __post_init__(self):
        if self.unit not in ("pktps", "kbps"):
            raise ValueError(f"meter unit {self.unit!r}: 'pktps' or 'kbps'")

    def __str__(self) -> str:
        return (f"meter {self.meter_id} {self.unit} rate={self.rate} burst={self.burst}  "
                f"[{self.origin}]")
