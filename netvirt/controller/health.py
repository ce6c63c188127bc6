"""Load balancer health checks, from the controller, as OVN's service monitor does them from
ovn-controller: a TCP SYN from the VIP (its MAC, address and PROBE_PORT) to each member's
target port, sent on the member's own hypervisor into the egress stages of its port (so the
member's firewall judges it as any packet to it), inside the member's tenant network:
tenants' addresses overlap, and a check from the host's own stack would reach nobody's
member.  The member's answer comes back to the VIP's probe port, which a flow of LB_CT
sends to the controller.  A tcp check passes on SYN+ACK (a RST ends the half-open
connection); an http check answers the SYN+ACK with its GET and passes on a response whose
status is one it expects (then resets the connection: it read all it needs).  RST,
anything else, or nothing within ``timeout`` is a failure.  ``fall`` failures in a row take
the member out of the select group, ``rise`` passes put it back; the agents recompile with
the new set.

One thread, woken every TICK: checks are cheap (a few packets out and in), and their times
are within a tick of what the YAML says.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from netvirt.drivers import packets
from netvirt.drivers.packets import ACK, FIN, PSH, RST, SYN, seq_add
from netvirt.pipeline.layout import REG_OUT
from netvirt.pipeline.records import Resubmit, SetField
from netvirt.pipeline.stages import first_egress
from netvirt.topology.balancer import PROBE_PORT, member_origin, vip_mac

log = logging.getLogger(__name__)
TICK = 0.05
RECONNECT_GRACE = 10.0  # s: above OVS's default controller max_backoff (8 s)


class Sent(NamedTuple):
    """A check under way: when it started, the ack that answers what was sent last (its
    SYN, or its request), and which of the two that was."""
    at: float  # monotonic
    ack: int
    phase: str  # "syn" or "request"


def http_request(path: str, host: str) -> bytes:
    return (f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: netvirt-health-check\r\n"
            f"Connection: close\r\n\r\n").encode()


@dataclass
class MemberHealth:
    origin: str  # tenant/T/load_balancer/L/member/P
    up: bool = True  # until checks say otherwise: a new member takes connections at once
    checked: bool = False  # whether a check has answered (or timed out) yet
    since: float = field(default_factory=time.time)  # wall clock of the last change
    passes: int = 0  # in a row
    failures: int = 0
    due: float = 0.0  # monotonic time of the next check
    sent: Sent | None = None  # the check waiting for its answer
    last: str = ""  # the last check's result ("HTTP 503", "reset by the member", ...): why


class HealthMonitor:
    def __init__(self, service, clock=time.monotonic):
        self.service = service
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self.members: dict[str, MemberHealth] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def down(self) -> frozenset[str]:
        with self._lock:
            return frozenset(o for o, m in self.members.items() if not m.up)

    def snapshot(self) -> dict[str, MemberHealth]:
        with self._lock:
            return {o: MemberHealth(**vars(m)) for o, m in self.members.items()}

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.tick()
            except Exception:
                log.exception("health checks")

    def _checks(self):
        """(member health, its check, its port ref, the load balancer, its tenant) of
        every member whose load balancer has a health check."""
        _, loaded, topo = self.service.snapshot()
        if loaded is None:
            return []
        out = []
        for t in loaded.config.tenants:
            for lb in t.load_balancers:
                if lb.health_check is None:
                    continue
                for m in lb.members:
                    origin = member_origin(t.name, lb.name, m.port)
                    out.append((origin, lb, m, topo.port(t.name, m.port), t.name))
        return out

    def tick(self) -> None:
        now = self._clock()
        checks = self._checks()
        changed = False
        with self._lock:
            wanted = {c[0] for c in checks}
            for origin in set(self.members) - wanted:  # removed from the config
                changed |= not self.members.pop(origin).up
            for origin, lb, m, ref, tenant in checks:
                h = self.members.setdefault(origin, MemberHealth(origin, due=now))
                hc = lb.health_check
                if h.sent is not None and now - h.sent.at > hc.timeout:
                    changed |= self._result(h, False, hc, "no answer in time")
                if h.sent is None and now >= h.due:
                    h.due = now + hc.interval
                    seq = random.getrandbits(32)
                    if self._send(ref, lb, m, tenant, seq, SYN):
                        h.sent = Sent(now, seq_add(seq, 1), "syn")
                    elif self._awaited(ref.port.hypervisor, now):
                        h.last = "not checked yet: the member's switch has not connected"
                    else:
                        changed |= self._result(h, False, hc,
                                                "the member's switch is not connected")
        if changed:
            self.service.members_changed(self.down())

    def _awaited(self, hv: str, now: float) -> bool:
        """Whether ``hv``'s switch has not met this controller yet and may still be on its
        way: a restarted controller's switches reconnect at their own pace (OVS backs off
        up to 8 s), and a check that cannot be sent then says nothing of the member.  One
        that was connected and went away, or that has not come in RECONNECT_GRACE, fails
        its members' checks."""
        agent = self.service.agents.get(hv)
        met = agent is not None and agent.status.switch_connected_at > 0
        return not met and now - self._started < RECONNECT_GRACE

    def _send(self, ref, lb, m, tenant: str, seq: int, flags: int, ack: int = 0,
              payload: bytes = b"") -> bool:
        agent = self.service.agents.get(ref.port.hypervisor)
        switch = agent.switch if agent else None
        ofport = agent.inventory.ofports.get(ref.port.interface) if agent else None
        if switch is None or not ofport:
            return False
        frame = packets.tcp_segment(vip_mac(tenant, lb.name), str(lb.vip.ip), PROBE_PORT,
                                    ref.port.mac, str(ref.port.ips[0]), m.target_port,
                                    flags, seq, ack, payload)
        switch.packet_out_actions((SetField(REG_OUT, ofport), Resubmit(first_egress())), frame)
        return True

    def answer(self, data: bytes) -> str:
        """A member's answer to a check (the packet-in path's call); a metrics label."""
        seg = packets.tcp_of(data)
        if seg is None:
            return "not_understood"
        for origin, lb, m, ref, tenant in self._checks():
            if (str(ref.port.ips[0]), m.target_port, str(lb.vip.ip)) != (seg.src, seg.sport,
                                                                          seg.dst):
                continue
            hc = lb.health_check
            with self._lock:
                h = self.members.get(origin)
                stale = h is None or h.sent is None or seg.ack != h.sent.ack
                # an http check's own connection may send a segment twice: not a stranger
                talking = h is not None and h.sent is not None and h.sent.phase == "request"
                # the SYN of the check under way, if the stale answer is to that SYN
                syn = (seq_add(h.sent.ack, -1) if stale and h is not None and h.sent is not None
                       and h.sent.phase == "syn" else None)
                if not stale:
                    verdict, why = self._judge(h.sent, seg, hc)
                    changed = False
                    if verdict == "request":  # the handshake is done: now the GET
                        request = http_request(hc.path, str(lb.vip.ip))
                        h.sent = Sent(h.sent.at, seq_add(seg.ack, len(request)), "request")
                    elif verdict == "wait":  # the member's ACK of the request, first
                        return "check_progress"
                    else:
                        changed = self._result(h, verdict == "passed", hc, why)
            if stale:  # an answer to a check that already ended (or another controller's)
                if not seg.flags & RST and not talking:
                    # Reset the member's half of it, as a TCP stack answers a segment of no
                    # connection it has (RFC 793: <SEQ=SEG.ACK><CTL=RST>).  Left alone, a
                    # member whose SYN+ACK came while this controller was away, or while the
                    # load balancer was out of the config, holds that half-open connection
                    # for a minute of SYN+ACK retries and answers every new check's SYN
                    # (same VIP, same probe port) with that old SYN+ACK: each check would
                    # time out, and the member stay down, for that minute.
                    self._send(ref, lb, m, tenant, seg.ack, RST)
                    if syn is not None:  # ours, answered so: again, to a clean slate
                        self._send(ref, lb, m, tenant, syn, SYN)
                return "stale_check"
            if verdict == "request":
                self._send(ref, lb, m, tenant, seg.ack, PSH | ACK, seq_add(seg.seq, 1), request)
                return "check_progress"
            if not seg.flags & RST:  # end the connection the check made
                self._send(ref, lb, m, tenant, seg.ack, RST)
            if changed:
                self.service.members_changed(self.down())
            return f"check_{verdict}"
        return "not_ours"

    @staticmethod
    def _judge(sent: Sent, seg, hc):
        """(verdict, why): the verdict is "passed", "failed", "request" (the handshake is
        done: send the GET) or "wait" (the member acknowledged it, its answer is to come)."""
        if seg.flags & RST:
            return "failed", "reset by the member"
        if sent.phase == "syn":
            if not (seg.flags & SYN and seg.flags & ACK):
                return "failed", "no SYN+ACK"
            return ("passed", "answered") if hc.type == "tcp" else ("request", "")
        if not seg.payload:
            return ("failed", "closed without an answer") if seg.flags & FIN else ("wait", "")
        status = packets.http_status(seg.payload)
        if status is None:
            return "failed", "not an HTTP response"
        return "passed" if status in hc.expect else "failed", f"HTTP {status}"

    def _result(self, h: MemberHealth, ok: bool, hc, why: str) -> bool:
        """Count one check's result; whether the member changed state."""
        h.sent, h.checked, h.last = None, True, why
        if ok:
            h.passes, h.failures = h.passes + 1, 0
        else:
            h.passes, h.failures = 0, h.failures + 1
        if h.up and h.failures >= hc.fall or not h.up and h.passes >= hc.rise:
            h.up, h.since = not h.up, time.time()
            log.warning("%s is %s (%s; %d check(s) in a row)", h.origin,
                        "up" if h.up else "DOWN", why, h.passes if h.up else h.failures)
            return True
        return False
