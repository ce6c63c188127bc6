"""The one loader shared by the CLI, the controller and the hook.

load_file()/load_text() parse safely, validate the schema and the semantic checks, collect
*all* problems with FILE:LINE:COL and YAML path, and return a LoadedConfig whose optional
values are allocated.  Nothing outside this package sees an unvalidated config.

load_data() is the controller's side of an apply: the client has parsed the YAML already and
sends the document along with its source, the way kubectl sends JSON to an API server.  The
controller validates the document again (schema, checks, allocation: everything but the YAML
syntax) and parses the source only when it needs a location: to report a problem, or when a
trace or a plan asks where a flow came from.  At 1000 ports that is ~15 ms per apply instead
of ~70 ms, most of which was PyYAML building a node per value.

The document is what is applied, so the revision's digest is the document's (its canonical
JSON), on both sides.  The source only lends line numbers, and only once it has been seen to
parse into that very document: a source that says something else gives no locations
(``source_matches`` is then False), never wrong ones.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pydantic

from netvirt.config import allocate
from netvirt.config.checks import check
from netvirt.config.routing import interface_ip
from netvirt.config.schema import Config
from netvirt.config.yamlsource import SourceMap, load_yaml
from netvirt.errors import ConfigError, Diagnostic, UsageError
from netvirt.gcpause import gc_paused


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """A validation problem, located later: by YAML path in the document."""

    path: tuple
    message: str
    key: bool = False  # the problem is the key at ``path``, not its value


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    source: str  # the YAML text, so a controller can be handed exactly what was validated
    filename: str
    revision: str  # content hash of the document (canonical JSON), see _digest
    data: object = field(repr=False)  # the parsed document, before validation (JSON-able)
    _smap: SourceMap | None = field(default=None, repr=False, compare=False)
    # the document validated, before allocation: what the next load_data can reuse
    _validated: Config | None = field(default=None, repr=False, compare=False)

    @cached_property
    def _source_map(self) -> SourceMap | None:
        """The source's marks, if the source holds this very document (a config loaded
        from data parses it on first use); None when it does not parse or says otherwise."""
        if self._smap is not None:
            return self._smap
        try:
            data, smap = load_yaml(self.source, self.filename)
        except ConfigError:
            return None
        return smap if data == self.data else None

    @property
    def source_matches(self) -> bool:
        return self._source_map is not None

    @cached_property
    def origins(self) -> dict:
        """origin string ("tenant/blue/port/web1") -> Location, from the source's marks;
        none at all when the source is not this document's."""
        smap = self._source_map
        return _origins(self.config, smap) if smap is not None else {}

    def location(self, origin: str) -> Location | None:
        return self.origins.get(origin)


def load_file(path: str | Path) -> LoadedConfig:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError([Diagnostic(str(p), 1, 1, "", f"cannot read file: {e.strerror}")]) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError([Diagnostic(str(p), line, col, "", f"not UTF-8 text (byte "
                                      f"{data[e.start]:#04x}); save the file as UTF-8")]) from None
    return load_text(text, str(p))


def load_text(text: str, filename: str, previous: LoadedConfig | None = None) -> LoadedConfig:
    """``previous``: the config this one replaces.  A tenant whose document equals its
    document there is not validated again: its model is reused, and the cross-object checks
    run on the whole config as always.  A one-port change at 1000 ports validates one
    tenant."""
    with gc_paused():
        data, smap = load_yaml(text, filename)
        validated = _validate(data, previous)
        if isinstance(validated, list):
            raise ConfigError([smap.diag(p.path, p.message, key=p.key) for p in validated])
        return LoadedConfig(_allocate(validated), text, filename, _digest(data), data, smap,
                            validated)


def load_data(data: object, source: str, filename: str,
              previous: LoadedConfig | None = None) -> LoadedConfig:
    """A document a client parsed from ``source``: validated again, the YAML not parsed
    unless a problem needs its location.  ``previous``: the config this one replaces (its
    unchanged tenants are not validated again)."""
    with gc_paused():
        validated = _validate(data, previous)
        if isinstance(validated, list):
            try:
                parsed, smap = load_yaml(source, filename)
            except ConfigError:
                parsed = smap = None
            if parsed != data:
                raise UsageError(f"the request's data is not the document its source "
                                 f"({filename}) holds; send the data parsed from that source")
            raise ConfigError([smap.diag(p.path, p.message, key=p.key) for p in validated])
        return LoadedConfig(_allocate(validated), source, filename, _digest(data), data, None,
                            validated)


def _digest(data: object) -> str:
    """Of the document, not its text: what is applied is the document, whatever the text
    around it (comments, order of keys) looks like."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _validate(data, previous: LoadedConfig | None = None) -> Config | list[Problem]:
    """The validated config (not yet allocated), or every problem: schema ones, else the
    cross-object checks.  Tenants unchanged from ``previous`` keep their models."""
    if not isinstance(data, dict):
        return [Problem((), "the top level must be a mapping with 'hypervisors' and 'tenants'")]
    try:
        cfg = _validate_schema(data, previous)
    except pydantic.ValidationError as e:
        return [_pydantic_problem(err) for err in e.errors()]
    problems = [Problem(path, msg) for path, msg in check(cfg)]
    return problems or cfg


def _validate_schema(data: dict, previous: LoadedConfig | None) -> Config:
    tenants = data.get("tenants")
    if (previous is None or previous._validated is None or not isinstance(tenants, list)
            or not isinstance(previous.data, dict)):
        return Config.model_validate(data)
    known = {t.get("name"): (t, model) for t, model in
             zip(previous.data.get("tenants") or [], previous._validated.tenants, strict=True)
             if isinstance(t, dict)}
    reused = [known.get(t.get("name"), (None, None)) if isinstance(t, dict) else (None, None)
              for t in tenants]
    reused = [model if doc == t else None
              for t, (doc, model) in zip(tenants, reused, strict=True)]
    fresh = [i for i, model in enumerate(reused) if model is None]
    try:
        cfg = Config.model_validate({**data, "tenants": [tenants[i] for i in fresh]})
    except pydantic.ValidationError:
        # the whole document fails the same way, with every problem at its own place
        return Config.model_validate(data)
    for i, model in zip(fresh, cfg.tenants, strict=True):
        reused[i] = model
    return cfg.model_copy(update={"tenants": reused})


def _pydantic_problem(err: dict) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return Problem(loc, f"unknown key {loc[-1]!r}; remove it or check its spelling "
                            f"(see docs/config.md)", key=True)
    if kind == "missing":
        return Problem(loc, f"missing required key {loc[-1]!r}")
    msg = err["msg"].removeprefix("Value error, ")
    return Problem(loc, f"{msg} (got {err.get('input')!r})")


def _allocate(cfg: Config) -> Config:
    """Fill in VNI, MAC, interface, router addresses and zones where absent.  Values are
    allocated in name order, so they do not depend on the order of items in the file; the
    items keep the file's order.  Networks are allocated before routers and external
    networks, so adding a router never moves a network's VNI."""
    taken_vni = {n.vni for t in cfg.tenants for n in t.networks if n.vni is not None}
    taken_vni |= {r.vni for t in cfg.tenants for r in t.routers if r.vni is not None}
    taken_vni |= {e.vni for e in cfg.external_networks if e.vni is not None}
    vnis: dict[str, int] = {}

    def vni(key: str) -> int:
        vnis[key] = allocate.allocate_vni(key, taken_vni)
        taken_vni.add(vnis[key])
        return vnis[key]

    for t in sorted(cfg.tenants, key=lambda t: t.name):
        for n in sorted(t.networks, key=lambda n: n.name):
            if n.vni is None:
                vni(f"{t.name}/{n.name}")
    for t in sorted(cfg.tenants, key=lambda t: t.name):
        for r in sorted(t.routers, key=lambda r: r.name):
            if r.vni is None:
                vni(f"router/{t.name}/{r.name}")
    externals = [e if e.vni is not None else e.model_copy(update={"vni": vni(f"external/{e.name}")})
                 for e in sorted(cfg.external_networks, key=lambda e: e.name)]
    by_name = {e.name: e for e in externals}
    taken_zone = {r.zone for t in cfg.tenants for r in t.routers if r.zone is not None}
    zones: dict[str, int] = {}
    for t in sorted(cfg.tenants, key=lambda t: t.name):
        for r in sorted(t.routers, key=lambda r: r.name):
            if r.zone is None:
                zones[f"{t.name}/{r.name}"] = allocate.allocate_zone(f"{t.name}/{r.name}",
                                                                     taken_zone)
                taken_zone.add(zones[f"{t.name}/{r.name}"])
    taken_zone |= {p.zone for t in cfg.tenants for p in t.ports if p.zone is not None}
    for t in sorted(cfg.tenants, key=lambda t: t.name):  # after routers: they keep theirs
        for p in sorted(t.ports, key=lambda p: p.name):
            if p.security_groups is not None and p.zone is None:
                zones[f"port/{t.name}/{p.name}"] = allocate.allocate_zone(
                    f"port/{t.name}/{p.name}", taken_zone)
                taken_zone.add(zones[f"port/{t.name}/{p.name}"])
    taken_zone |= {z for t in cfg.tenants for z in (t.zone, t.hairpin_zone) if z is not None}
    for t in sorted(cfg.tenants, key=lambda t: t.name):  # last: ports and routers keep theirs
        for key, have in ((f"tenant/{t.name}", t.zone), (f"tenant/{t.name}/hairpin",
                                                          t.hairpin_zone)):
            if t.load_balancers and have is None:
                zones[key] = allocate.allocate_zone(key, taken_zone)
                taken_zone.add(zones[key])
    tenants = []
    for t in cfg.tenants:
        taken_mac = {(p.network, p.mac) for p in t.ports if p.mac}
        macs: dict[str, str] = {}
        for p in sorted(t.ports, key=lambda p: p.name):
            if p.mac is None:
                used = {m for (net, m) in taken_mac if net == p.network}
                macs[p.name] = allocate.allocate_mac(f"{t.name}/{p.name}", used)
                taken_mac.add((p.network, macs[p.name]))
        if all(n.vni is not None for n in t.networks) and all(_port_complete(p)
                                                              for p in t.ports) \
                and all(_router_complete(r) for r in t.routers) \
                and ((t.zone and t.hairpin_zone) or not t.load_balancers):
            tenants.append(t)  # nothing to fill in: no copy (most of a large config)
            continue
        networks = [n if n.vni is not None else n.model_copy(update={"vni": vnis[f"{t.name}/{n.name}"]})
                    for n in t.networks]
        ports = [p if _port_complete(p) else p.model_copy(update={
            "mac": p.mac or macs[p.name],
            "interface": p.interface or allocate.interface_name(t.name, p.name),
            "zone": p.zone or zones.get(f"port/{t.name}/{p.name}")}) for p in t.ports]
        nets = {n.name: n for n in t.networks}
        routers = [r if _router_complete(r) else r.model_copy(update={
            "vni": r.vni or vnis[f"router/{t.name}/{r.name}"],
            "zone": r.zone or zones[f"{t.name}/{r.name}"],
            "interfaces": [i if i.ip else i.model_copy(update={
                "ip": interface_ip(i, nets[i.network])}) for i in r.interfaces]})
            for r in t.routers]
        tenants.append(t.model_copy(update={"networks": networks, "ports": ports,
                                            "routers": routers,
                                            "zone": t.zone or zones.get(f"tenant/{t.name}"),
                                            "hairpin_zone": t.hairpin_zone or zones.get(
                                                f"tenant/{t.name}/hairpin")}))
    return cfg.model_copy(update={"tenants": tenants, "external_networks": [
        by_name[e.name] for e in cfg.external_networks]})


def _port_complete(p) -> bool:
    return bool(p.mac and p.interface and (p.zone or p.security_groups is None))


def _router_complete(r) -> bool:
    return r.vni is not None and r.zone is not None and all(i.ip for i in r.interfaces)


def _origins(cfg: Config, smap: SourceMap) -> dict:
    def loc(path):
        m = smap.mark(path)
        return Location(smap.filename, m.line, m.col)

    out = {"controller": loc(("controller",))}
    for i, h in enumerate(cfg.hypervisors):
        out[f"hypervisor/{h.name}"] = loc(("hypervisors", i))
    for i, e in enumerate(cfg.external_networks):
        out[f"external_network/{e.name}"] = loc(("external_networks", i))
    for ti, t in enumerate(cfg.tenants):
        out[f"tenant/{t.name}"] = loc(("tenants", ti))
        for ni, n in enumerate(t.networks):
            out[f"tenant/{t.name}/network/{n.name}"] = loc(("tenants", ti, "networks", ni))
        for pi, p in enumerate(t.ports):
            out[f"tenant/{t.name}/port/{p.name}"] = loc(("tenants", ti, "ports", pi))
        for ri, r in enumerate(t.routers):
            rp, ro = ("tenants", ti, "routers", ri), f"tenant/{t.name}/router/{r.name}"
            out[ro] = loc(rp)
            for ii, i in enumerate(r.interfaces):
                out[f"{ro}/interface/{i.network}"] = loc(rp + ("interfaces", ii))
            for i, _ in enumerate(r.routes):
                out[f"{ro}/route/{i}"] = loc(rp + ("routes", i))
            if r.external_gateway is not None:
                out[f"{ro}/external_gateway"] = loc(rp + ("external_gateway",))
        for gi, g in enumerate(t.security_groups):
            gp, go = ("tenants", ti, "security_groups", gi), f"tenant/{t.name}/security_group/{g.name}"
            out[go] = loc(gp)
            for ri, _ in enumerate(g.rules):
                out[f"{go}/rule/{ri}"] = loc(gp + ("rules", ri))
        out[f"tenant/{t.name}/firewall"] = loc(("tenants", ti, "firewall"))  # else the tenant's
        for fi, f in enumerate(t.floating_ips):
            out[f"tenant/{t.name}/floating_ip/{f.ip}"] = loc(("tenants", ti, "floating_ips", fi))
        for qi, q in enumerate(t.qos_policies):
            out[f"tenant/{t.name}/qos_policy/{q.name}"] = loc(("tenants", ti, "qos_policies", qi))
        for li, lb in enumerate(t.load_balancers):
            lp, lo = ("tenants", ti, "load_balancers", li), f"tenant/{t.name}/load_balancer/{lb.name}"
            out[lo] = loc(lp)
            for mi, m in enumerate(lb.members):
                out[f"{lo}/member/{m.port}"] = loc(lp + ("members", mi))
    return out
