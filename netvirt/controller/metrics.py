"""Prometheus metrics, collected when scraped: controller state from the agents, counters
from the switches (OpenFlow port stats, and the packet counts of each table's default drop
flow, selected by their origin's cookie)."""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from netvirt.controller.flows import origin_id
from netvirt.controller.pipeline import Table
from netvirt.errors import NetvirtError

log = logging.getLogger(__name__)
ORIGIN_MASK = 0xFFFFFFFF << 32
PORT_COUNTERS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")


class NetvirtCollector:
    def __init__(self, service):
        self.service = service

    def collect(self):
        rev, loaded, topo = self.service.snapshot()
        agents = dict(self.service.agents)
        connected = GaugeMetricFamily("netvirt_switch_connected",
                                      "1 if the hypervisor's br-int is connected", labels=["hypervisor"])
        in_sync = GaugeMetricFamily("netvirt_in_sync", "1 if the installed flows equal the desired",
                                    labels=["hypervisor"])
        flows = GaugeMetricFamily("netvirt_flows", "OpenFlow flows per switch",
                                  labels=["hypervisor", "state"])
        recs = CounterMetricFamily("netvirt_reconciliations", "reconciliation passes",
                                   labels=["hypervisor"])
        rec_s = CounterMetricFamily("netvirt_reconciliation_seconds",
                                    "time spent reconciling", labels=["hypervisor"])
        mods = CounterMetricFamily("netvirt_flow_mods", "flow mods sent", labels=["hypervisor"])
        drops = CounterMetricFamily("netvirt_pipeline_drops_packets",
                                    "packets dropped by a table's default flow",
                                    labels=["hypervisor", "table"])
        port = {c: CounterMetricFamily(f"netvirt_port_{c}", f"VM port {c.replace('_', ' ')}",
                                       labels=["tenant", "port", "hypervisor"]) for c in PORT_COUNTERS}
        tenant = {c: CounterMetricFamily(f"netvirt_tenant_{c}", f"sum of the tenant's ports' {c}",
                                         labels=["tenant"]) for c in PORT_COUNTERS}
        sums: dict[tuple[str, str], int] = {}
        for name, a in sorted(agents.items()):
            st = a.status
            connected.add_metric([name], 1 if st.switch_connected else 0)
            in_sync.add_metric([name], 1 if st.in_sync else 0)
            flows.add_metric([name, "desired"], st.desired_flows)
            flows.add_metric([name, "installed"], st.installed_flows)
            recs.add_metric([name], st.reconciles)
            rec_s.add_metric([name], st.reconcile_seconds_total)
            mods.add_metric([name], st.flow_mods_sent)
            sw = a.switch
            if sw is None or topo is None or name not in topo.hypervisors:
                continue
            try:
                stats = sw.read_port_stats()
                for t in Table:
                    oid = origin_id(f"pipeline/{t.name}") << 32
                    for _, packets in sw.read_flow_counters(oid, ORIGIN_MASK):
                        if t is not Table.ARP_RESPONDER:  # its default continues, not drops
                            drops.add_metric([name, t.name], packets)
            except NetvirtError as e:
                log.warning("metrics: %s: %s", name, e)
                continue
            for ref in topo.ports_on(name):
                ofport = a.inventory.ofports.get(ref.port.interface)
                if ofport not in stats:
                    continue
                for c in PORT_COUNTERS:
                    port[c].add_metric([ref.tenant, ref.port.name, name], stats[ofport][c])
                    sums[(ref.tenant, c)] = sums.get((ref.tenant, c), 0) + stats[ofport][c]
        for (t, c), v in sorted(sums.items()):
            tenant[c].add_metric([t], v)
        yield from (connected, in_sync, flows, recs, rec_s, mods, drops)
        yield from port.values()
        yield from tenant.values()


def exposition(service) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetvirtCollector(service))
    return generate_latest(registry)
