"""The emulated lab: every hypervisor of a config as a network namespace on this machine.

    root netns:   bridge nv-mgmt carrying the controller's OpenFlow address
    nv-underlay:  a Linux bridge joining the hypervisors' underlay NICs (MTU 1600)
    nv-<hv>:      a private ovsdb-server + ovs-vswitchd and its node agent (netvirt node);
                  br-phy holds the underlay IP
    nv-<t>-<p>:   one namespace per VM port: eth0 with the port's MAC, IP and MTU

The lab only does what a hypervisor's own provisioning would do (daemons, underlay, devices);
bridges' flows and VM ports on br-int are the controller's job.  Everything it makes is
recorded in STATE_DIR/state.json as it is made, so `down` removes exactly that, by name for
namespaces and links and by recorded PID for processes; a failed `up` removes what it made.

The integration tests and the demo use this module: it is the one harness.  (Mininet's
namespaces live only as long as the Python process that made them, while `lab up`, `lab exec`
and `lab down` are separate commands; see docs/architecture.md.)
"""
from __future__ import annotations

import errno
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, NetNS, netns

from netvirt.config import LoadedConfig
from netvirt.config.schema import Hypervisor
from netvirt.errors import LabError, UsageError
from netvirt.host.kernel import datapath_hint
from netvirt.host.lab_external import sync_externals
from netvirt.host.namespaces import (PREFIX, external_netns, hv_netns, netns_create,
                                     remove_netns, tx_off, vm_netns)
from netvirt.host.ovs_daemons import PrivateOvs
from netvirt.topology import PortRef, Topology

STATE_DIR = Path(os.environ.get("NETVIRT_LAB_DIR", "/run/netvirt-lab"))
UNDERLAY_MTU = 1600  # VXLAN adds 50 bytes to the guests' 1450/1500


class Lab:
    def __init__(self, state_dir: Path = STATE_DIR, prefix: str = PREFIX):
        self.state_dir = Path(state_dir)
        self.prefix = prefix
        self.mgmt_bridge = f"{prefix}-mgmt"
        self.underlay_ns = f"{prefix}-underlay"
        self.state_file = state_dir / "state.json"
        self.state = self._read()

    # -- state ---------------------------------------------------------------------------
    def _read(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {}

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.replace(self.state_file)

    def _record(self, kind: str, item) -> None:
        self.state.setdefault(kind, [])
        if item not in self.state[kind]:
            self.state[kind].append(item)
        self._save()

    @property
    def is_up(self) -> bool:
        return bool(self.state.get("hypervisors"))

    def ovs(self, hv: str) -> PrivateOvs:
        try:
            info = self.state["hypervisors"][hv]
        except KeyError:
            known = ", ".join(sorted(self.state.get("hypervisors", {}))) or "none"
            raise UsageError(f"hypervisor {hv!r} is not in the lab (known: {known}); is the "
                             f"lab up? (netvirt lab up FILE)") from None
        return PrivateOvs(hv_netns(hv, self.prefix), Path(info["rundir"]),
                          self.state.get("enable_dummy", False))

    # -- up / sync ------------------------------------------------------------------------
    def up(self, loaded: LoadedConfig, enable_dummy: bool = False) -> None:
        """Build the lab for ``loaded``; on an existing lab, add, remove and reconfigure VMs
        to match.  ``enable_dummy`` lets ovs-vswitchd host dummy ports (interface_type:
        dummy)."""
        cfg = loaded.config
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, OVS daemons); run it as root")
        topo = Topology(cfg)
        if self.is_up:
            if sorted(self.state["hypervisors"]) != sorted(topo.hypervisors):
                raise LabError("the lab that is up has other hypervisors; run "
                               "`netvirt lab down` first")
            sync_externals(self, cfg)
            self._sync_vms(topo)
            return self._built_from(loaded)
        self.state["enable_dummy"] = enable_dummy
        try:
            self._mgmt_bridge(cfg.controller.openflow)
            netns_create(self.underlay_ns, self)
            with NetNS(self.underlay_ns) as ns:
                ns.link("add", ifname="ul", kind="bridge", mtu=UNDERLAY_MTU)
                ns.link("set", index=ns.link_lookup(ifname="ul")[0], state="up")
            self.state["hypervisors"] = {}
            for i, hv in enumerate(cfg.hypervisors):
                self._hypervisor(i, hv, cfg.controller.openflow)
            self._check_underlay(cfg.hypervisors)
            for hv in cfg.hypervisors:  # all started first: each takes a second to come up
                self.start_node(hv.name)
            for hv in cfg.hypervisors:
                self.wait_node(hv.name)
            sync_externals(self, cfg)
            self._sync_vms(topo)
            self._built_from(loaded)
        except Exception:
            self.down()
            raise

    def _built_from(self, loaded: LoadedConfig) -> None:
        self.state["config"] = {"file": loaded.filename, "digest": loaded.revision}
        self._save()

    def check_built_from(self, loaded: LoadedConfig) -> None:
        """Refuse to test ``loaded`` against a lab made for another config."""
        was = self.state.get("config")
        if was and was["digest"] != loaded.revision:
            raise UsageError(f"the lab is up for {was['file']} ({was['digest']}), not "
                             f"{loaded.filename} ({loaded.revision}); run `netvirt lab up "
                             f"{loaded.filename}` first")

    def _mgmt_bridge(self, openflow: str) -> None:
        ip = openflow.removeprefix("tcp:").rsplit(":", 1)[0]
        if ipaddress.ip_address(ip).is_loopback:
            raise LabError(f"controller.openflow {openflow} is a loopback address, which the "
                           f"hypervisor namespaces cannot reach; use e.g. tcp:172.30.0.1:6653")
        with IPRoute() as ipr:
            if ipr.link_lookup(ifname=self.mgmt_bridge):
                raise LabError(f"link {self.mgmt_bridge} already exists but no lab is recorded in "
                               f"{self.state_file}; remove it with `ip link del {self.mgmt_bridge}`")
            ipr.link("add", ifname=self.mgmt_bridge, kind="bridge")
            self._record("root_links", self.mgmt_bridge)
            idx = ipr.link_lookup(ifname=self.mgmt_bridge)[0]
            ipr.addr("add", index=idx, address=ip, prefixlen=24)
            ipr.link("set", index=idx, state="up")
        self.state["mgmt"] = {"controller_ip": ip}

    def _mgmt_ip(self, i: int) -> str:
        ctl = ipaddress.ip_address(self.state["mgmt"]["controller_ip"])
        net = ipaddress.ip_network(f"{ctl}/24", strict=False)
        hosts = [h for h in net.hosts() if h != ctl]
        return str(hosts[i])

    def _hypervisor(self, i: int, hv: Hypervisor, openflow: str) -> None:
        if not hv.ovsdb.startswith("unix:"):
            raise LabError(f"hypervisor {hv.name}: the lab runs a private OVS per hypervisor and "
                           f"needs ovsdb: unix:/PATH/db.sock (got {hv.ovsdb})")
        ns = hv_netns(hv.name, self.prefix)
        netns_create(ns, self)
        rundir = Path(hv.ovsdb.removeprefix("unix:")).parent
        if not rundir.exists():
            rundir.mkdir(parents=True)
            self._record("dirs", str(rundir))
        self.state["hypervisors"][hv.name] = {"rundir": str(rundir), "pids": {}}
        self._save()
        # management link: root side on nv-mgmt, hypervisor side mgmt0
        with IPRoute() as ipr:
            root_if = f"{self.prefix}m{i}"
            ipr.link("add", ifname=root_if, kind="veth", peer={"ifname": "mgmt0", "net_ns_fd": ns})
            self._record("root_links", root_if)
            idx = ipr.link_lookup(ifname=root_if)[0]
            ipr.link("set", index=idx, master=ipr.link_lookup(ifname=self.mgmt_bridge)[0], state="up")
        # underlay link: hypervisor side ul0, underlay side hv<i> on the bridge
        with NetNS(self.underlay_ns) as uns:
            uns.link("add", ifname=f"hv{i}", kind="veth", mtu=UNDERLAY_MTU,
                     peer={"ifname": "ul0", "net_ns_fd": ns, "mtu": UNDERLAY_MTU})
            idx = uns.link_lookup(ifname=f"hv{i}")[0]
            uns.link("set", index=idx, master=uns.link_lookup(ifname="ul")[0], state="up")
        with NetNS(ns) as hns:
            for name in ("lo", "mgmt0", "ul0"):
                hns.link("set", index=hns.link_lookup(ifname=name)[0], state="up")
            hns.addr("add", index=hns.link_lookup(ifname="mgmt0")[0],
                     address=self._mgmt_ip(i), prefixlen=24)
            ul_mac = hns.get_links(hns.link_lookup(ifname="ul0")[0])[0].get_attr("IFLA_ADDRESS")
        tx_off(ns, "ul0")
        ovs = PrivateOvs(ns, rundir, self.state.get("enable_dummy", False))
        dp_type = hv.datapath_type or datapath_hint()
        try:
            self.state["hypervisors"][hv.name]["pids"] = ovs.start()
        finally:
            self.state["hypervisors"][hv.name]["pids"] = ovs.pids()
            self._save()
        # Userspace tunnelling needs the underlay IP on br-phy, with the NIC's MAC.
        ovs.vsctl("--may-exist", "add-br", "br-phy", "--", "set", "bridge", "br-phy",
                  f"datapath_type={dp_type}", "fail-mode=standalone",
                  f"other_config:hwaddr={ul_mac}", "--", "--may-exist", "add-port", "br-phy", "ul0")
        self.state["hypervisors"][hv.name]["underlay_ip"] = str(hv.underlay_ip)
        self._save()
        self._underlay_address(hv.name)

    def _underlay_address(self, hv: str) -> None:
        """Put the underlay IP on br-phy, as the host's network configuration would.  The
        userspace br-phy device belongs to ovs-vswitchd: it (and the IP) vanish when the
        daemon stops, so this runs again after every restart."""
        iface = ipaddress.ip_interface(self.state["hypervisors"][hv]["underlay_ip"])
        with NetNS(hv_netns(hv, self.prefix)) as hns:
            idx = _wait_link(hns, "br-phy", hv)
            hns.addr("replace", index=idx, address=str(iface.ip),
                     prefixlen=iface.network.prefixlen)
            hns.link("set", index=idx, state="up", mtu=UNDERLAY_MTU)

    def _check_underlay(self, hvs: list[Hypervisor]) -> None:
        """Ping every hypervisor's underlay IP from the first one.  Besides proving the
        underlay, this fills the userspace datapath's tunnel ARP cache, whose first miss
        would otherwise drop the first packet each VM sends to a new hypervisor."""
        for src in hvs:
            for dst in hvs:
                if src is dst:
                    continue
                r = subprocess.run(["ip", "netns", "exec", hv_netns(src.name, self.prefix),
                                    "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1",
                                    str(dst.underlay_ip.ip)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise LabError(f"underlay: {src.name} cannot reach {dst.name} at "
                                   f"{dst.underlay_ip.ip}: {r.stdout.strip() or r.stderr.strip()}")

    def _sync_vms(self, topo: Topology) -> None:
        # Only "system" ports are guests' devices; OVS makes internal and dummy ports itself.
        want = {vm_netns(r.tenant, r.port.name, self.prefix): r for hv in topo.hypervisors
                for r in topo.ports_on(hv) if r.port.interface_type == "system"}
        have = self.state.get("vms", {})
        for ns in sorted(set(have) - set(want)):
            self.remove_vm(ns)
        for ns, ref in sorted(want.items()):
            vm = have.get(ns)
            if vm is not None and (vm["hypervisor"], vm["interface"]) != (
                    ref.port.hypervisor, ref.port.interface):
                self.remove_vm(ns)  # moved: a new device on the other hypervisor
                vm = None
            if vm is None:
                self.add_vm(ref)
            elif _guest(ref) != {k: vm.get(k) for k in ("mac", "addresses", "mtu", "gateway")}:
                self._reconfigure_vm(ns, ref)

    def _reconfigure_vm(self, ns: str, ref: PortRef) -> None:
        """A guest whose MAC, addresses or MTU changed in the config, changed in place: its
        devices stay (ovs-vswitchd's userspace datapath does not reopen a device deleted and
        made again under the same name)."""
        guest = _guest(ref)
        with NetNS(ns) as vns:
            idx = vns.link_lookup(ifname="eth0")[0]
            vns.link("set", index=idx, address=guest["mac"], mtu=guest["mtu"])
            for a in vns.get_addr(index=idx, family=socket.AF_INET):
                vns.addr("del", index=idx, address=a.get_attr("IFA_ADDRESS"),
                         prefixlen=a["prefixlen"])
            for address in guest["addresses"]:
                ip, prefixlen = address.split("/")
                vns.addr("add", index=idx, address=ip, prefixlen=int(prefixlen))
            _default_route(vns, idx, guest["gateway"])
        with NetNS(hv_netns(ref.port.hypervisor, self.prefix)) as hns:
            hns.link("set", index=hns.link_lookup(ifname=ref.port.interface)[0],
                     mtu=guest["mtu"])
        self.state["vms"][ns].update(guest)
        self._save()
        # What a guest's gratuitous ARP would do on a real network: the other guests forget
        # the old MAC of these addresses at once instead of black-holing their replies
        # until their neighbour entry goes stale.  (The pipeline answers ARP itself, so a
        # GARP would not reach them.)
        for other in self.state["vms"]:
            if other != ns:
                for address in guest["addresses"]:
                    subprocess.run(["ip", "-n", other, "neigh", "flush", "to",
                                    address.split("/")[0]], capture_output=True)

    def add_vm(self, ref: PortRef) -> None:
        ns = vm_netns(ref.tenant, ref.port.name, self.prefix)
        hvns = hv_netns(ref.port.hypervisor, self.prefix)
        netns_create(ns, self)
        guest = _guest(ref)
        self.state.setdefault("vms", {})[ns] = {"tenant": ref.tenant, "port": ref.port.name,
                                               "hypervisor": ref.port.hypervisor,
                                               "interface": ref.port.interface, **guest}
        self._save()
        with NetNS(ns) as vns:
            vns.link("add", ifname="eth0", kind="veth", address=guest["mac"], mtu=guest["mtu"],
                     peer={"ifname": ref.port.interface, "net_ns_fd": hvns, "mtu": guest["mtu"]})
            idx = vns.link_lookup(ifname="eth0")[0]
            for address in guest["addresses"]:
                ip, prefixlen = address.split("/")
                vns.addr("add", index=idx, address=ip, prefixlen=int(prefixlen))
            vns.link("set", index=vns.link_lookup(ifname="lo")[0], state="up")
            vns.link("set", index=idx, state="up")
            _default_route(vns, idx, guest["gateway"])
        with NetNS(hvns) as hns:
            hns.link("set", index=hns.link_lookup(ifname=ref.port.interface)[0], state="up")
        tx_off(ns, "eth0")
        tx_off(hvns, ref.port.interface)
        # quiet guests: no IPv6 autoconf chatter for port security to drop
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1"], capture_output=True)

    def remove_vm(self, ns: str) -> None:
        vm = self.state.get("vms", {}).get(ns)
        if vm is None:
            return
        if ns in netns.listnetns():
            remove_netns(ns)  # its eth0 goes with it, and so does the veth peer on the hv
        del self.state["vms"][ns]
        self._save()

    # -- use --------------------------------------------------------------------------------
    def vm(self, name: str) -> dict:
        """A VM port's guest, TENANT/PORT, or an external network's outside, external/NAME:
        its namespace and what the lab recorded of it."""
        tenant, _, port = name.partition("/")
        if tenant == "external" and port in self.state.get("externals", {}):
            return {"netns": external_netns(port, self.prefix)}
        ns = vm_netns(tenant, port, self.prefix)
        if ns not in self.state.get("vms", {}):
            known = ", ".join(sorted(f"{v['tenant']}/{v['port']}" for v in
                                     self.state.get("vms", {}).values())) or "none (is the lab up?)"
            raise UsageError(f"no VM port {name!r} in the lab; known: {known}")
        return {"netns": ns, **self.state["vms"][ns]}

    def exec_argv(self, name: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.vm(name)["netns"], *argv]

    def guest_link(self, name: str, up: bool) -> None:
        """Take a guest's interface down or up, as its own network configuration would:
        the kernel drops the default route with the link, so up puts it back."""
        vm = self.vm(name)
        with NetNS(vm["netns"]) as vns:
            idx = vns.link_lookup(ifname="eth0")[0]
            vns.link("set", index=idx, state="up" if up else "down")
            if up:
                _default_route(vns, idx, vm.get("gateway"))

    # -- one hypervisor's daemons, by recorded PID -----------------------------------------
    def stop_vswitchd(self, hv: str) -> None:
        """Stop one hypervisor's ovs-vswitchd, as a crash or an upgrade would."""
        self.ovs(hv).stop_vswitchd()

    def start_vswitchd(self, hv: str) -> None:
        """Start it again, recording the new PID so that `down` still stops it, and give
        br-phy back the underlay IP that went with the old daemon."""
        self._start(hv, PrivateOvs.start_vswitchd)
        self._underlay_address(hv)

    def stop_ovsdb(self, hv: str) -> None:
        """Stop one hypervisor's ovsdb-server, as a crash would."""
        self.ovs(hv).stop_ovsdb()

    def start_ovsdb(self, hv: str) -> None:
        self._start(hv, PrivateOvs.start_ovsdb)

    def _start(self, hv: str, start) -> None:
        ovs = self.ovs(hv)
        try:
            start(ovs)
        finally:  # whatever runs now is what `down` must stop
            self.state["hypervisors"][hv]["pids"] = ovs.pids()
            self._save()

    # -- the node agent of each hypervisor ---------------------------------------------
    def _node_log(self, hv: str) -> Path:
        return Path(self.state["hypervisors"][hv]["rundir"]) / "node.log"

    def start_node(self, hv: str) -> int:
        """Start `netvirt node` inside the hypervisor's namespace, as its init would; the
        PID is recorded for `down`.  Its log is node.log beside the hypervisor's OVSDB."""
        ovs = self.ovs(hv)
        with open(self._node_log(hv), "w") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ovs.netns, sys.executable, "-m", "netvirt.cli", "node",
                 "--ovsdb", f"unix:{ovs.db_sock}"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)  # outlives `lab up`
        self.state["hypervisors"][hv]["node_pid"] = proc.pid
        self._save()
        return proc.pid

    def wait_node(self, hv: str, timeout: float = 20.0) -> None:
        """Until the node has made its first pass (its report is in OVSDB)."""
        log, pid = self._node_log(hv), self.state["hypervisors"][hv]["node_pid"]
        deadline = time.monotonic() + timeout
        while "node: pass 1:" not in log.read_text():
            if not self.ovs(hv).is_ours(pid):
                why = "exited before its first pass"
            elif time.monotonic() > deadline:
                why = f"made no pass within {timeout:.0f}s"
            else:
                time.sleep(0.05)
                continue
            raise LabError(f"the node agent of {hv} (pid {pid}) {why}; its log {log} "
                           f"ends:\n{log.read_text()[-1500:]}")

    def stop_node(self, hv: str) -> None:
        info = self.state["hypervisors"][hv]
        self.ovs(hv).stop_daemon("netvirt-node", info.pop("node_pid", None))
        self._save()

    def restart_node(self, hv: str) -> None:
        self.stop_node(hv)
        self.start_node(hv)
        self.wait_node(hv)

    # -- down -------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything the lab recorded; return what was removed.  Every step is tried
        even if an earlier one fails, so one problem does not leave the rest behind."""
        removed, failed = [], []

        def attempt(what: str, fn) -> None:
            try:
                fn()
                removed.append(what)
            except Exception as e:  # collect, keep going, report at the end
                failed.append(f"{what}: {e}")

        for hv, info in sorted(self.state.get("hypervisors", {}).items()):
            ovs = PrivateOvs(hv_netns(hv, self.prefix), Path(info["rundir"]))
            if info.get("node_pid"):
                attempt(f"netvirt node of {hv} (pid {info['node_pid']})",
                        lambda o=ovs, p=info["node_pid"]: o.stop_daemon("netvirt-node", p))
            for name, pid in sorted(info.get("pids", {}).items()):
                attempt(f"{name} of {hv} (pid {pid})",
                        lambda o=ovs, n=name, p=pid: o.stop_daemon(n, p))
        existing = set(netns.listnetns())
        for ns in self.state.get("namespaces", []):
            if ns in existing:
                attempt(f"netns {ns}", lambda n=ns: remove_netns(n))
        with IPRoute() as ipr:
            for name in reversed(self.state.get("root_links", [])):
                if ipr.link_lookup(ifname=name):
                    attempt(f"link {name}", lambda n=name: _del_link(ipr, n))
        for d in self.state.get("dirs", []):
            shutil.rmtree(d, ignore_errors=True)
        if failed:
            self._save()
            raise LabError("lab down could not remove: " + "; ".join(failed))
        self.state = {}
        self.state_file.unlink(missing_ok=True)
        return removed

def _wait_link(ns, name: str, hv: str, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ns.link_lookup(ifname=name)
        if found:
            return found[0]
        time.sleep(0.02)
    raise LabError(f"{hv}: device {name} did not appear within {timeout}s; see the "
                   f"hypervisor's ovs-vswitchd.log")


def _guest(ref: PortRef) -> dict:
    """What the guest behind a VM port is configured with, as the lab records it: as DHCP
    would give it, the default route is its first address's subnet's gateway, if any."""
    subnets = [next(s for s in ref.network.subnets if ip in s.cidr) for ip in ref.port.ips]
    addresses = [f"{ip}/{s.cidr.prefixlen}" for ip, s in zip(ref.port.ips, subnets, strict=True)]
    gateway = str(subnets[0].gateway) if subnets[0].gateway else None
    return {"mac": ref.port.mac, "addresses": addresses, "mtu": ref.network.mtu,
            "gateway": gateway}


def _default_route(ns, idx: int, gateway: str | None) -> None:
    """Point the guest's default route at ``gateway`` (or none), replacing what it had."""
    try:
        ns.route("del", dst="0.0.0.0/0")
    except NetlinkError:
        pass  # it had none
    if gateway is not None:
        ns.route("add", dst="0.0.0.0/0", gateway=gateway, oif=idx)


def _del_link(ipr: IPRoute, name: str) -> None:
    """Delete a link that may vanish meanwhile: a veth goes with its peer's namespace, and
    the kernel removes a namespace's devices asynchronously after the namespace is gone."""
    try:
        ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
    except (IndexError, NetlinkError) as e:
        if isinstance(e, NetlinkError) and e.code != errno.ENODEV:
            raise


