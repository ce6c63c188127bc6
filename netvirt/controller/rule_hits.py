"""How many connections each security-group rule let in or out: the packet counts of its
flows, read from the switches.  A rule's flows carry its origin in their cookie's high half;
OVS counts no packet on a conjunction's clause flows, so what a rule's flows counted is
what its commit flow did: one per connection it allowed (the connection's later packets
pass on the live-mark flows, which are the tenant firewall's)."""
from __future__ import annotations

import logging

from netvirt.errors import NetvirtError
from netvirt.pipeline.records import origin_id
from netvirt.pipeline.tables import Table

log = logging.getLogger(__name__)


def rule_origins(cfg) -> list[str]:
    return [f"tenant/{t.name}/security_group/{g.name}/rule/{i}"
            for t in cfg.tenants for g in t.security_groups for i, _ in enumerate(g.rules)]


def rule_hits(cfg, agents: dict) -> dict[str, int]:
    """origin of each rule -> connections it allowed, summed over the hypervisors (whose
    switches are connected now; counters restart with their flows)."""
    by_id = {origin_id(o): o for o in rule_origins(cfg)}
    hits = dict.fromkeys(by_id.values(), 0)
    if not by_id:
        return hits
    for name, a in sorted(agents.items()):
        sw = a.switch
        if sw is None:
            continue
        try:
            for table in (Table.ACL_FROM_VM, Table.ACL_TO_VM):
                for cookie, packets in sw.read_table_counters(int(table)).items():
                    origin = by_id.get(cookie >> 32)
                    if origin is not None:
                        hits[origin] += packets
        except NetvirtError as e:
            log.warning("rule hits: %s: %s", name, e)
    return hits
