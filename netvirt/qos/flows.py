"""QOS_FROM_VM, QOS_SHARED_FROM_VM, QOS_SHARED_TO_VM: the OpenFlow half of QoS.

What a VM sends is limited by an OpenFlow meter, not by tc: the userspace datapath reads a
VM's device through a packet socket, which sees a frame before the tc ingress hook runs, so
an ingress policer or an IFB redirect limits nothing OVS receives; a meter is applied in
the pipeline and works the same on both datapaths (measured here: a 10 Mbit/s meter held
TCP at 10.4).  The DSCP mark is set in the same flow, on IPv4 only (OpenFlow needs the
eth_type prerequisite), so every copy and every path of the packet (switched, routed,
tunnelled) carries it.

A tenant's aggregate is one meter per direction on each hypervisor: every one of its ports
there passes it, so they share its rate (a stage of its own: OpenFlow 1.3 gives a flow one
meter, and a port may have its own rate as well)."""
from __future__ import annotations

from netvirt.pipeline.layout import ETH_IP, REG_OUT, qos_port_meter_id
from netvirt.pipeline.records import Flow, Goto, Meter, MeterAction, SetField
from netvirt.pipeline.stages import following
from netvirt.pipeline.tables import Table
from netvirt.topology.qos import QosOnHv


def compile_qos(view: QosOnHv) -> tuple[list[Flow], list, list[Meter]]:
    flows, meters = [], []
    go_on = Goto(following(Table.QOS_FROM_VM))
    for p in view.ports:
        metered = []
        if p.rate_kbps is not None:
            meter = Meter(qos_port_meter_id(p.ofport), p.rate_kbps, p.burst_kbits, "kbps",
                          p.origin)
            meters.append(meter)
            metered = [MeterAction(meter.meter_id)]
            flows.append(Flow.make(Table.QOS_FROM_VM, 100, {"in_port": p.ofport},
                                   metered + [go_on], p.origin))
        if p.dscp is not None:
            flows.append(Flow.make(Table.QOS_FROM_VM, 110,
                                   {"in_port": p.ofport, "eth_type": ETH_IP},
                                   metered + [SetField("ip_dscp", p.dscp), go_on], p.origin))
    agg = view.aggregate
    if agg is not None:
        for table, rate, field in ((Table.QOS_SHARED_FROM_VM, agg.from_vm, "in_port"),
                                   (Table.QOS_SHARED_TO_VM, agg.to_vm, REG_OUT)):
            if rate is None:
                continue
            meter_id, kbps, burst = rate
            meters.append(Meter(meter_id, kbps, burst, "kbps", agg.origin))
            for ofport in agg.ofports:
                flows.append(Flow.make(table, 100, {field: ofport},
                                       [MeterAction(meter_id), Goto(following(table))],
                                       agg.origin))
    return flows, [], meters
