"""The lab's external networks: each is a namespace that stands for the outside world.

Its bridge holds the external network's gateway address (so the namespace is the outside
router, and a host on the external network at once) and, on its loopback, OUTSIDE_HOST: a
host beyond that router, which routers reach through the gateway as they would reach the
Internet.  Each of the network's gateway hypervisors has a veth into that bridge, named as
the config's `interface`; netvirt puts it on br-int.  `netvirt lab exec external/NAME --
CMD` runs a command there."""
from __future__ import annotations

from pyroute2 import NetNS

from netvirt.config.schema import Config, ExternalNetwork
from netvirt.host.namespaces import external_netns, hv_netns, netns_create, tx_off

OUTSIDE_HOST = "198.51.100.1"  # beyond the external network's gateway
BRIDGE = "outside"


def sync_externals(lab, cfg: Config) -> None:
    """Make the external networks of ``cfg`` that the lab lacks (a lab that is up keeps the
    ones it has; `lab down` removes them with the other namespaces)."""
    have = lab.state.setdefault("externals", {})
    for e in cfg.external_networks:
        if e.name not in have:
            _make(lab, e)
            have[e.name] = {"netns": external_netns(e.name, lab.prefix),
                            "hypervisors": list(e.hypervisors)}
            lab._save()


def _make(lab, e: ExternalNetwork) -> None:
    ns = external_netns(e.name, lab.prefix)
    netns_create(ns, lab)
    with NetNS(ns) as ons:
        ons.link("add", ifname=BRIDGE, kind="bridge")
        br = ons.link_lookup(ifname=BRIDGE)[0]
        ons.addr("add", index=br, address=str(e.gateway), prefixlen=e.cidr.prefixlen)
        lo = ons.link_lookup(ifname="lo")[0]
        ons.addr("add", index=lo, address=OUTSIDE_HOST, prefixlen=32)
        for idx in (br, lo):
            ons.link("set", index=idx, state="up")
        for hv in e.hypervisors:
            side = f"to-{hv}"[:15]
            with NetNS(hv_netns(hv, lab.prefix)) as hns:
                hns.link("add", ifname=e.interface, kind="veth",
                         peer={"ifname": side, "net_ns_fd": ns})
                hns.link("set", index=hns.link_lookup(ifname=e.interface)[0], state="up")
            ons.link("set", index=ons.link_lookup(ifname=side)[0], master=br, state="up")
            tx_off(hv_netns(hv, lab.prefix), e.interface)
            tx_off(ns, side)
