"""The controller service: owns the current config, one agent per hypervisor, os-ken and the
HTTP API, and the shutdown path (os-ken's own run_apps crashes on shutdown in 4.2.2)."""
from __future__ import annotations

import ipaddress
import logging
import os
import resource
import signal
import socket
import threading
import time

from netvirt.config import LoadedConfig
from netvirt.controller.health import HealthMonitor
from netvirt.controller.packet_in import PacketIns, Punt
from netvirt.drivers.ofcodec import packet_in_fields, port_status
from netvirt.drivers.ofswitch import OFSwitch, dp_id
from netvirt.drivers.ovsdb import OvsdbDriver
from netvirt.errors import ControllerError, IsolationError
from netvirt.gcpause import Collector
from netvirt.inspect.proof import IsolationProof, Proof
from netvirt.inspect.real_trace import compare, origin_index
from netvirt.inspect.simulate import Network
from netvirt.inspect.trace import TraceError, TraceRequest, trace
from netvirt.overlay.ovsdb import datapath_id
from netvirt.reconcile import diff
from netvirt.reconcile.agent import HypervisorAgent
from netvirt.reconcile.compiler import compile_flows
from netvirt.topology import Topology
from netvirt.topology.inventory import Inventory
from netvirt.controller.rule_hits import rule_hits
from netvirt.topology.balancer import lb_origin, member_origin
from netvirt.topology.live import live_topology, qos_gaps, utc

log = logging.getLogger(__name__)


def _agent(name: str, service, audit_interval: float) -> HypervisorAgent:
    return HypervisorAgent(name, service, audit_interval, ovsdb_factory=OvsdbDriver)


class ControllerService:
    def __init__(self, loaded: LoadedConfig | None, openflow: str, audit_interval: float = 10.0,
                 agent_factory=_agent):
        self.openflow = openflow  # the address os-ken listens on; fixed for the process
        self.audit_interval = audit_interval
        self._agent_factory = agent_factory  # (name, service, audit_interval) -> agent
        self._lock = threading.Lock()
        self._rev = 0
        self._loaded: LoadedConfig | None = None
        self._topo: Topology | None = None
        self.agents: dict[str, HypervisorAgent] = {}
        self._by_dpid: dict[int, HypervisorAgent] = {}
        self._datapaths: dict[int, object] = {}  # datapath id -> its latest connection
        self._conns: dict[object, OFSwitch] = {}  # every connection -> its driver
        self.started = time.time()
        self._listeners: list = []  # called after every agent's pass
        self.packet_ins = PacketIns(self)
        self.health = HealthMonitor(self)
        self._port_index: dict[str, tuple] = {}  # hv -> (topology, inventory, ofport -> ref)
        self.isolation = IsolationProof()
        if loaded is not None:
            self.apply(loaded)

    # -- config ----------------------------------------------------------------------------
    def snapshot(self) -> tuple[int, LoadedConfig, Topology]:
        with self._lock:
            return self._rev, self._loaded, self._topo

    def check(self, loaded: LoadedConfig) -> None:
        """Refuse what this running controller cannot do, before anything changes."""
        wanted = loaded.config.controller.openflow
        if wanted != self.openflow:
            raise ControllerError(
                f"{loaded.location('controller') or loaded.filename}: controller.openflow is "
                f"{wanted} but this controller listens on {self.openflow}; restart the "
                f"controller to move it")

    def apply(self, loaded: LoadedConfig) -> int:
        """Swap in a validated config atomically, once its compiled tables are proven to
        keep tenants apart; agents converge to it."""
        self.check(loaded)
        topo = Topology(loaded.config, previous=self._topo)
        proof = self.isolation.run(topo, self._inventories())
        if proof.violations:
            log.error("config %s refused: %s", loaded.filename, proof.explain(loaded))
            raise IsolationError(f"{proof.explain(loaded)}\nnothing was applied: this is a "
                                 f"netvirt bug or a case its checks miss; report it with the "
                                 f"file")
        log.info("%s", proof.summary())
        with self._lock:
            self._rev += 1
            self._loaded, self._topo = loaded, topo
            rev = self._rev
            for name in topo.hypervisors:
                if name not in self.agents:
                    a = self._agent_factory(name, self, self.audit_interval)
                    self.agents[name] = a
                    self._by_dpid[datapath_id(name)] = a
                    if dp := self._datapaths.get(datapath_id(name)):
                        a.attach(self._conns[dp])  # it connected before the config named it
                    a.health(self.health.down())
                    a.start()
            for name in list(self.agents):
                if name not in topo.hypervisors:
                    # No longer managed: its flows stay as they are (fail-secure), we stop.
                    a = self.agents.pop(name)
                    self._by_dpid.pop(datapath_id(name), None)
                    threading.Thread(target=a.stop, daemon=True).start()
        log.info("config revision %d (%s, %s) accepted", rev, loaded.filename, loaded.revision)
        for a in list(self.agents.values()):
            a.mark_dirty()
        return rev

    def _inventories(self) -> dict[str, Inventory]:
        return {name: a.inventory for name, a in list(self.agents.items())}

    def plan(self, loaded: LoadedConfig) -> tuple[dict[str, tuple[diff.Plan, dict]], Proof]:
        """What applying ``loaded`` would change on each hypervisor, with the flows we know
        by key (to print deletions in full), and its isolation proof; changes nothing."""
        topo = Topology(loaded.config)
        proof = self.isolation.run(topo, self._inventories())
        out = {}
        for name in topo.hypervisors:
            a = self.agents.get(name)
            inventory = a.inventory if a else Inventory()
            installed, groups, meters = a.mirror() if a else ({}, set(), {})
            known = a.last_desired if a else {}
            out[name] = (diff.plan(compile_flows(topo, name, inventory), installed, groups,
                                   meters), known)
        return out, proof

    def topology(self) -> dict:
        rev, loaded, topo = self.snapshot()
        agents = dict(self.agents)
        hits = rule_hits(loaded.config, agents) if loaded is not None else {}
        return live_topology(rev, loaded, topo, agents, hits, self.health.snapshot())

    def trace(self, request: dict) -> dict:
        rev, loaded, topo = self.snapshot()
        if loaded is None:
            raise TraceError("no config has been applied yet; nothing to trace")
        agents = dict(self.agents)
        inventories = {hv: agents[hv].inventory if hv in agents else Inventory()
                       for hv in topo.hypervisors}
        per_hv = {hv: compile_flows(topo, hv, inv) for hv, inv in inventories.items()}
        net = Network.of_config(per_hv, loaded.config)
        result = trace(TraceRequest.from_json(request), loaded, topo, net, inventories)
        result["revision"] = rev
        self._with_health(result, loaded)
        if request.get("real"):
            origins = origin_index(per_hv)
            reports = []
            for stage in ("arp", "packet"):
                if stage in result:
                    result[stage]["real"] = compare(result[stage]["entries"], net,
                                                    topo.hypervisors, origins)
                    reports += result[stage]["real"]
            result["agree"] = all(r.get("agree") for r in reports)
        return result

    def _with_health(self, result: dict, loaded: LoadedConfig) -> None:
        """A checked load balancer's choices in a trace, with each member's health; a
        member whose checks fail is listed too, as not picked."""
        health = self.health.snapshot()
        lbs = {lb_origin(t.name, lb.name): (t, lb)
               for t in loaded.config.tenants for lb in t.load_balancers if lb.health_check}
        for stage in ("arp", "packet"):
            for step in result.get(stage, {}).get("steps", ()):
                if not step.get("choices") or step.get("origin") not in lbs:
                    continue
                t, lb = lbs[step["origin"]]
                ips = {p.name: str(p.ips[0]) for p in t.ports}
                by_to = {c["to"]: c for c in step["choices"]}
                for m in lb.members:
                    h = health.get(member_origin(t.name, lb.name, m.port))
                    to = f"{ips[m.port]}:{m.target_port}"
                    state = "unchecked" if h is None or not h.checked else \
                        ("up" if h.up else "down")
                    if to in by_to:
                        by_to[to]["health"] = state
                    elif m.weight:
                        step["choices"].append({"to": to, "weight": m.weight,
                                                "followed": False, "health": state})

    def on_progress(self, fn) -> None:
        """Call ``fn()`` (from an agent's thread) after every agent's pass: the API wakes
        its long polls with it."""
        self._listeners.append(fn)

    def notify(self) -> None:
        """An agent finished a pass: wake whoever waits for convergence."""
        for fn in list(self._listeners):
            fn()

    def status(self) -> dict:
        rev, loaded, topo = self.snapshot()
        hvs = {n: vars(a.status).copy() for n, a in sorted(self.agents.items())}
        for h in hvs.values():
            # what `netvirt status` and monitoring call healthy
            h["healthy"] = (h["in_sync"] and h["applied_revision"] == rev and h["switch_connected"]
                            and h["ovsdb_connected"] and not h["ports_down"]
                            and not h["port_errors"])
        gaps = []
        if loaded is not None:
            for hv in topo.hypervisors:
                for g in qos_gaps(topo, hv, self.agents.get(hv)).values():
                    if g["parts"]:
                        gaps.append({"port": "/".join(g["origin"].split("/")[1::2]),
                                     "hypervisor": hv, "parts": g["parts"], "why": g["why"]})
        return {
            "revision": rev,
            "config": {"file": loaded.filename, "digest": loaded.revision} if loaded else None,
            "openflow": self.openflow,
            "uptime_seconds": round(time.time() - self.started, 1),
            "in_sync": all(h["in_sync"] and h["applied_revision"] == rev for h in hvs.values()),
            # nothing to run is not health: a controller started without a file says so
            "healthy": loaded is not None and all(h["healthy"] for h in hvs.values()),
            "hypervisors": hvs,
            # the tenants' servers, not netvirt: a member down does not make netvirt unhealthy
            "load_balancer_members_down": [
                {"member": "/".join(o.split("/")[1::2]), "since": utc(h.since),
                 "last_check": h.last}
                for o, h in sorted(self.health.snapshot().items()) if not h.up],
            # the parts of QoS policies a hypervisor cannot enforce (no netem there, no node
            # agent): not netvirt's health either, but never silent
            "qos_not_enforced": gaps,
        }

    # -- os-ken events (os-ken's thread) ------------------------------------------------
    # Every connection gets its OFSwitch at once (replies are routed to it by connection),
    # and goes to the agent of the datapath id it claims; the agent takes it only once it
    # proved to be that hypervisor's br-int (reconcile/agent.py, _check).
    def switch_connected(self, dp) -> None:
        sw = OFSwitch(dp)
        with self._lock:
            self._datapaths[dp.id] = dp
            self._conns[dp] = sw
        a = self._by_dpid.get(dp.id)
        if a is None:
            log.warning("switch %s at %s is not a br-int of any configured hypervisor; "
                        "ignoring it", dp_id(dp), sw.address)
            return
        log.info("%s: switch %s connected from %s", a.name, dp_id(dp), sw.address)
        a.attach(sw)

    def switch_disconnected(self, dp) -> None:
        with self._lock:
            if self._datapaths.get(dp.id) is dp:
                del self._datapaths[dp.id]
            sw = self._conns.pop(dp, None)
        a = self._by_dpid.get(dp.id)
        if a is not None and sw is not None:
            log.info("%s: switch %s at %s disconnected", a.name, dp_id(dp), sw.address)
            a.detach(sw)

    def _attached(self, dp) -> HypervisorAgent | None:
        """The agent whose attached switch is this connection, or None."""
        a = self._by_dpid.get(dp.id)
        sw = a.switch if a else None  # read once: the agent's thread may replace it
        return a if sw is not None and sw.dp is dp else None

    def reply(self, msg, last: bool) -> None:
        if sw := self._conns.get(msg.datapath):
            sw.deliver(msg, last=last)

    def error(self, msg) -> None:
        if sw := self._conns.get(msg.datapath):
            sw.deliver_error(msg)

    # Only from the connection the agent has taken: another one claiming the same
    # datapath id must not move its inventory or its mirror.  (Before it is taken, nothing
    # is lost: taking it reads the ports and flows again.)
    def port_status(self, msg) -> None:
        if a := self._attached(msg.datapath):
            a.port_changed(*port_status(msg))

    def flow_removed(self, msg) -> None:
        if a := self._attached(msg.datapath):
            a.flow_removed((msg.table_id, msg.priority, msg.cookie))

    def packet_in(self, msg) -> None:
        if a := self._attached(msg.datapath):
            self.packet_ins.receive(a.name, self._conns.get(msg.datapath),
                                    Punt(*packet_in_fields(msg)))

    def port_at(self, hv: str, ofport: int):
        """The configured port whose interface has ``ofport`` on ``hv``'s switch, or None.
        (The packet-in worker's question; its index lasts while topology and inventory do.)"""
        _, _, topo = self.snapshot()
        a = self.agents.get(hv)
        if a is None or topo is None or hv not in topo.hypervisors:
            return None
        inv = a.inventory
        cached = self._port_index.get(hv)
        if cached is None or cached[0] is not topo or cached[1] is not inv:
            index = {inv.ofports.get(r.port.interface): r for r in topo.ports_on(hv)}
            cached = self._port_index[hv] = (topo, inv, index)
        return cached[2].get(ofport)

    def router_interface(self, vni: int):
        """The router interface (RouterIfaceRef) on the network with this VNI, or None.
        (The packet-in worker's question for an ICMP error: who sends it.)"""
        _, _, topo = self.snapshot()
        if topo is None or (net := topo.network_by_vni(vni)) is None:
            return None
        router = topo.router_of(*net)
        return next((i for i in router.interfaces if i.network.name == net[1]), None) \
            if router else None

    def learn_neighbour(self, hv: str, vni: int, ip: str, mac: str) -> bool:
        """A MAC heard on an external network ``hv`` is a gateway of; False when that is
        not one (or the address is not on it)."""
        _, _, topo = self.snapshot()
        a = self.agents.get(hv)
        e = topo.external_by_vni(vni) if topo else None
        if a is None or e is None or hv not in e.hypervisors or \
                ipaddress.IPv4Address(ip) not in e.cidr:
            return False
        a.learned({(vni, ip): mac})
        return True

    def external_asker(self, hv: str, vni: int, src: str, dst: str):
        """Who asks for the next hop of a packet from ``src`` (a router's external address
        or floating IP) to ``dst`` on the external network ``vni``: (its port on ``hv``,
        the router's MAC, ``src``, the next hop), or None."""
        _, _, topo = self.snapshot()
        a = self.agents.get(hv)
        e = topo.external_by_vni(vni) if topo else None
        if a is None or e is None:
            return None
        router = next((r for r in topo.routers_on(hv) if r.external is e and r.gateway_hv == hv
                       and src in [str(r.router.external_gateway.ip)]
                       + [fip for _, fip, _ in r.floating_ips]), None)
        ofport = a.inventory.ofports.get(e.interface)
        if router is None or not ofport:
            return None
        hop = dst if ipaddress.IPv4Address(dst) in e.cidr else str(e.gateway)
        return ofport, router.external_mac, src, hop

    # -- lifecycle -------------------------------------------------------------------------
    def members_changed(self, down: frozenset[str]) -> None:
        """Load balancer members' health changed: every agent recompiles its groups."""
        for a in list(self.agents.values()):
            a.health(down)

    def start(self) -> None:
        self.packet_ins.start()
        self.health.start()

    def stop(self) -> None:
        self.health.stop()
        self.packet_ins.stop()
        for a in list(self.agents.values()):
            a.stop()


def in_sync_at(status: dict, revision: int, healthy: bool = False) -> bool:
    """Whether ``status`` is in sync at ``revision`` or later (and, with ``healthy``, has
    every configured port on its switch, with its flows)."""
    return (status["revision"] >= revision and status["in_sync"]
            and (status["healthy"] or not healthy))


def run(loaded: LoadedConfig | None, openflow: str, api_addr: str, audit_interval: float,
        token: str | None = None) -> int:
    """Run the controller until SIGTERM/SIGINT.  Flows stay on the switches when it exits
    (br-int is fail-mode secure), so a restart drops no packet."""
    from netvirt.controller.api import ApiServer
    from netvirt.drivers import ofapp

    host, port = openflow.removeprefix("tcp:").rsplit(":", 1)
    _raise_open_files()
    api = ApiServer(None, api_addr, token)  # binds now: a second controller fails here, loudly
    _check_bindable(host, int(port), "OpenFlow")
    service = ControllerService(loaded, openflow, audit_interval)
    api.service = service
    service.start()
    ofapp.start(service, host, int(port))
    api.start()
    collector = Collector()  # full garbage collections at quiet moments, every 10 minutes
    collector.start()
    log.info("controller: OpenFlow on %s:%s, API on http://%s", host, port, api_addr)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    log.info("controller: stopping; flows stay installed on the switches")
    api.stop()
    collector.stop()
    service.stop()
    # os-ken 4.2.2 cannot stop its own threads (HubThread has no kill()), so the process
    # exits here rather than waiting for them.
    logging.shutdown()
    os._exit(0)


def _raise_open_files() -> None:
    """Every API connection, switch and OVSDB session is a file; Debian's soft limit of
    1024 would refuse connections long before the API's own limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                    else max(soft, 65536), hard))


def _check_bindable(host: str, port: int, what: str) -> None:
    """os-ken logs and carries on when it cannot listen; refuse to start instead."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        raise ControllerError(f"cannot listen for {what} on {host}:{port}: {e.strerror}; is another "
                              f"controller running, or is the address not on this host?") from None
    finally:
        s.close()
