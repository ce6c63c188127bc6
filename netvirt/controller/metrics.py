"""Prometheus metrics, collected when scraped: controller state from the agents, counters
from the switches (OpenFlow port stats, and the packet counts of the pipeline's own drop
flows — each table's catch-all drops — selected by their exact cookies)."""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from netvirt.controller.rule_hits import rule_hits
from netvirt.errors import NetvirtError
from netvirt.pipeline.layout import PUNT_METER_ID
from netvirt.pipeline.stages import STAGES, Miss
from netvirt.reconcile.compiler import fixed_flows

log = logging.getLogger(__name__)
ALL_ONES_64 = (1 << 64) - 1
# The pipeline's fixed drop flows (an unknown tunnel source, a spoofed source, an ARP
# request no one here answers, an unknown destination): the rest of its fixed flows continue.
# A lookup stage's empty miss is no drop: its resubmit returns and the packet goes on.
DROP_FLOWS = [f for f in fixed_flows()
              if not f.actions and STAGES[f.table].miss is not Miss.RETURN]
PORT_COUNTERS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")


class NetvirtCollector:
    def __init__(self, service, api: dict[str, int]):
        self.service = service
        self.api = api  # the API server's own gauges

    def collect(self):
        for key, what in (("connections", "open API connections"),
                          ("long_polls", "status requests waiting for a revision")):
            yield GaugeMetricFamily(f"netvirt_api_{key}", what, value=self.api.get(key, 0))
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
        refused = CounterMetricFamily("netvirt_switch_refused",
                                      "connections that claimed the hypervisor's datapath id "
                                      "without being its br-int", labels=["hypervisor"])
        drops = CounterMetricFamily("netvirt_pipeline_drops_packets",
                                    "packets dropped by a table's catch-all drop flow",
                                    labels=["hypervisor", "table"])
        port = {c: CounterMetricFamily(f"netvirt_port_{c}", f"VM port {c.replace('_', ' ')}",
                                       labels=["tenant", "port", "hypervisor"]) for c in PORT_COUNTERS}
        tenant = {c: CounterMetricFamily(f"netvirt_tenant_{c}", f"sum of the tenant's ports' {c}",
                                         labels=["tenant"]) for c in PORT_COUNTERS}
        punts = CounterMetricFamily("netvirt_packet_ins", "packets sent to the controller, by "
                                    "what became of them", labels=["hypervisor", "verdict"])
        punt_drops = CounterMetricFamily("netvirt_punt_meter_dropped_packets",
                                         "packets for the controller the switch's punt meter "
                                         "dropped", labels=["hypervisor"])
        for (hv, verdict), n in sorted(dict(self.service.packet_ins.counts).items()):
            punts.add_metric([hv, verdict], n)
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
            refused.add_metric([name], st.refused_total)
            sw = a.switch
            if sw is None or topo is None or name not in topo.hypervisors:
                continue
            try:
                stats = sw.read_port_stats()
                dropped = {f.table.name: 0 for f in DROP_FLOWS}
                for f in DROP_FLOWS:
                    for _, packets in sw.read_flow_counters(f.cookie, ALL_ONES_64):
                        dropped[f.table.name] += packets
                for table, packets in dropped.items():
                    drops.add_metric([name, table], packets)
                metered = sw.read_meter_stats().get(PUNT_METER_ID)
                if metered is not None:
                    punt_drops.add_metric([name], metered)
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
        rules = CounterMetricFamily("netvirt_firewall_rule_connections",
                                    "connections a security-group rule allowed (its flows' "
                                    "packet counts)", labels=["tenant", "group", "rule"])
        if loaded is not None:
            for origin, n in rule_hits(loaded.config, agents).items():
                _, t, _, g, _, i = origin.split("/")
                rules.add_metric([t, g, i], n)
        yield rules
        members = GaugeMetricFamily("netvirt_lb_member_up", "a load balancer member whose "
                                    "health checks pass (1) or fail (0)",
                                    labels=["tenant", "load_balancer", "member"])
        for origin, h in self.service.health.snapshot().items():
            _, t, _, lb, _, m = origin.split("/")
            members.add_metric([t, lb, m], 1 if h.up else 0)
        yield members
        yield from _qos(agents)
        yield from (connected, in_sync, flows, recs, rec_s, mods, refused, drops, punts,
                    punt_drops)
        yield from port.values()
        yield from tenant.values()


def exposition(service, api: dict[str, int]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetvirtCollector(service, api))
    return generate_latest(registry)


def _qos(agents: dict):
    """The node agents' counters of netvirt's qdiscs on each VM device (as they reported
    them last: at most every few seconds), labelled by port."""
    families = {c: CounterMetricFamily(f"netvirt_qos_qdisc_{c}",
                                       f"{what} of the qdisc (to the VM) on a port's device",
                                       labels=["tenant", "port", "hypervisor", "qdisc"])
                for c, what in (("bytes", "bytes sent"), ("packets", "packets sent"),
                                ("drops", "packets dropped"),
                                ("overlimits", "times a packet was over the rate"))}
    for hv, a in sorted(agents.items()):
        for report in a.node_qos.values():
            _, tenant, _, port = report["origin"].split("/")
            for kind, counters in sorted(report["counters"].items()):
                for c, family in families.items():
                    family.add_metric([tenant, port, hv, kind], counters.get(c, 0))
    return families.values()
