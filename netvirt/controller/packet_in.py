"""The packet-in path: packets that flows send to the controller (DHCP requests, routed
packets whose TTL runs out, ARP on external networks: replies to learn from and next hops
to ask for; what the firewall denied, for the drop log; health probes with the load
balancer).

Three limits stand between a flooding VM and the rest of the controller:
1. on the switch, every flow to the controller passes the punt meter (PUNT_RATE packets/s
   per switch; pipeline/layout.py);
2. here, on os-ken's thread, a token bucket per (switch, port) and then one per switch
   drop what is over its share before any parsing, so one port cannot use up its switch's;
3. what passes waits in a bounded queue for the worker thread, never on os-ken's thread,
   which also carries every reply the agents wait for.
The worker answers directly (a packet-out on the asking port): packet-in services are the
one exception to "handlers only mark dirty", because an answer is not state to converge.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from typing import NamedTuple

from netvirt.drivers import packets
from netvirt.errors import NetvirtError
from netvirt.nfv import dhcp
from netvirt.pipeline.layout import VNI_MASK
from netvirt.pipeline.tables import Table
from netvirt.topology.balancer import PROBE_PORT

log = logging.getLogger(__name__)
# the firewall's drop log: a logger of its own, to follow or to route elsewhere
drops = logging.getLogger("netvirt.firewall")
PER_SWITCH = (300.0, 150)  # packets per second, burst: above the switch's punt meter
PER_PORT = (20.0, 20)
QUEUE = 512
ASK_INTERVAL = 1.0  # seconds between two ARP requests for one next hop


class Punt(NamedTuple):
    """A packet a flow sent to the controller, and where it was."""

    in_port: int
    table: int  # the table whose flow sent it: which service it is for
    metadata: int  # the network it was in (its VNI in the low bits)
    data: bytes
    out_port: int = 0  # the output register: the port an egress stage judged it for


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class PacketIns:
    def __init__(self, service, clock=time.monotonic, per_switch=PER_SWITCH,
                 per_port=PER_PORT):
        self.service = service  # port_at(hv, ofport) -> PortRef | None
        self._clock = clock
        self._per_switch, self._per_port = per_switch, per_port
        self._buckets: dict[tuple, TokenBucket] = {}
        self._queue: queue.Queue = queue.Queue(QUEUE)
        self._asked: dict[tuple, float] = {}  # (hv, next hop) -> when the worker ARPed
        self.counts: Counter = Counter()  # (hypervisor, verdict) -> packets
        self._count_lock = threading.Lock()  # two threads count: os-ken's and the worker
        self._thread = threading.Thread(target=self._serve, name="packet-in", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)

    def _bucket(self, key: tuple, limits: tuple, now: float) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(*limits, now)
        return b

    def receive(self, hv: str, switch, punt: Punt) -> bool:
        """On os-ken's thread: admit or drop, cheaply.  Returns whether it was queued."""
        now = self._clock()
        # the port's share first: what one port sends over it must not use up its switch's
        if not self._bucket((hv, punt.in_port), self._per_port, now).take(now):
            verdict = "limited_port"
        elif not self._bucket((hv,), self._per_switch, now).take(now):
            verdict = "limited_switch"
        else:
            try:
                self._queue.put_nowait((hv, switch, punt))
                verdict = "queued"
            except queue.Full:
                verdict = "queue_full"
        self._count(hv, verdict)
        return verdict == "queued"

    def _count(self, hv: str, verdict: str) -> None:
        with self._count_lock:
            self.counts[(hv, verdict)] += 1

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._count(item[0], self.handle(*item))
            except NetvirtError as e:  # the switch went away meanwhile
                log.info("packet-in on %s port %s: %s", item[0], item[2].in_port, e)
            except Exception:
                log.exception("packet-in on %s port %s", item[0], item[2].in_port)

    def handle(self, hv: str, switch, punt: Punt) -> str:
        """Answer one packet; returns what became of it (a metrics label)."""
        if punt.table == Table.L3_INPUT:
            return self._time_exceeded(switch, punt)
        if punt.table == Table.ARP_RESPONDER:
            return self._learn(hv, punt)
        if punt.table == Table.L3_RESOLVE:
            return self._ask(hv, switch, punt)
        if punt.table in (Table.ACL_FROM_VM, Table.ACL_TO_VM):
            return self._denied(hv, punt)
        if punt.table in (Table.LB_CT, Table.LB_PICK):
            return self._balancer(switch, punt)
        return self._dhcp(hv, switch, punt)

    def _denied(self, hv: str, punt: Punt) -> str:
        """The drop log: which port's firewall denied what, in which direction.  (The
        switch's log meter and this path's buckets bound how much of it there is.)"""
        sends = punt.table == Table.ACL_FROM_VM
        port = self.service.port_at(hv, punt.in_port if sends else punt.out_port)
        what = packets.connection(punt.data)
        if port is None or what is None:
            return "not_understood"
        drops.info("denied on %s: %s/%s %s %s: no rule of its security groups (%s) allows "
                   "it, or the rule that did is gone", hv, port.tenant, port.port.name,
                   "sends" if sends else "receives", what,
                   ", ".join(port.port.security_groups or ()) or "none")
        return "firewall_denied"

    def _balancer(self, switch, punt: Punt) -> str:
        """A member's answer to a health check; or a new connection to a VIP none of whose
        members is up, which is refused (a TCP reset, from the VIP) rather than lost."""
        seg = packets.tcp_of(punt.data)
        if seg is None:
            return "not_understood"
        if seg.dport == PROBE_PORT:
            return self.service.health.answer(punt.data)
        reset = packets.tcp_reset(punt.data)
        if reset is None:
            return "not_understood"
        switch.packet_out(punt.in_port, reset)
        return "refused_no_member"

    def _learn(self, hv: str, punt: Punt) -> str:
        """An ARP reply on an external network: its sender's MAC is where that address's
        packets go.  The agent keeps it (and in the hypervisor's OVSDB)."""
        sender = packets.arp_sender(punt.data)
        if sender is None:
            return "not_understood"
        return "learned" if self.service.learn_neighbour(hv, punt.metadata & VNI_MASK,
                                                         *sender) else "not_ours"

    def _ask(self, hv: str, switch, punt: Punt) -> str:
        """A packet out to an external network whose next hop's MAC is not known yet: ARP
        for it, from the router's address the packet carries (it is lost, as a router that
        has to ARP loses it).  At most once a second per next hop."""
        addresses = packets.ipv4_addresses(punt.data)
        if addresses is None:
            return "not_understood"
        asker = self.service.external_asker(hv, punt.metadata & VNI_MASK, *addresses)
        if asker is None:
            return "not_ours"
        ofport, mac, src_ip, next_hop = asker
        now = self._clock()
        if now - self._asked.get((hv, next_hop), float("-inf")) < ASK_INTERVAL:
            return "asked_already"
        self._asked[(hv, next_hop)] = now
        switch.packet_out(ofport, packets.arp_request(mac, src_ip, next_hop))
        return "asked"

    def _dhcp(self, hv: str, switch, punt: Punt) -> str:
        req = packets.dhcp_request(punt.data)
        if req is None:
            return "not_understood"
        port = self.service.port_at(hv, punt.in_port)
        if port is None or not port.network.dhcp or req.client_mac != port.port.mac:
            return "not_ours"  # a port that left, or a client that is not the port
        iface = self.service.router_interface(port.network.vni)
        ans = dhcp.answer(req, dhcp.lease_of(port, iface.mac if iface else None))
        if ans is None:
            return "no_answer_due"
        switch.packet_out(punt.in_port, packets.dhcp_answer(ans))
        return "answered"

    def _time_exceeded(self, switch, punt: Punt) -> str:
        """A routed packet whose TTL would run out: the router's interface on the network
        it came from says so, back to the sender (traceroute's hop)."""
        iface = self.service.router_interface(punt.metadata & VNI_MASK)
        if iface is None:
            return "not_ours"  # its network lost its router meanwhile
        frame = packets.time_exceeded(punt.data, iface.mac, iface.ip)
        if frame is None:
            return "not_understood"
        switch.packet_out(punt.in_port, frame)
        return "answered"
