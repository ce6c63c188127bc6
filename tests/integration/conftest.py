"""The integration harness: a 3-hypervisor lab with real OVS, a real controller process and
real traffic.  Names use the prefix "nvt" and addresses of their own, so a demo lab can be up
at the same time.  Everything is removed at the end, daemons by their recorded PIDs."""
from __future__ import annotations

import copy
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from netvirt.client import Client
from netvirt.config import load_file
from netvirt.host.lab import Lab

NEEDED = {"ovsdb-server": "openvswitch-switch", "ovs-vswitchd": "openvswitch-switch",
          "ovs-ofctl": "openvswitch-switch", "ethtool": "ethtool", "ping": "iputils-ping",
          "iperf3": "iperf3", "ip": "iproute2"}


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root: they create network namespaces and OVS daemons"
    missing = sorted({pkg for b, pkg in NEEDED.items() if not shutil.which(b)})
    if missing:
        return f"missing Debian packages: {' '.join(missing)} (scripts/setup installs them)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    for item in items:
        if "integration" in item.nodeid.split("::")[0]:
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


API = "127.0.0.1:18181"


def base_config(rundir: Path) -> dict:
    hvs = [{"name": f"hv{i}", "underlay_ip": f"192.168.59.{i}/24",
            "ovsdb": f"unix:{rundir}/hv{i}/db.sock"} for i in (1, 2, 3)]

    def port(name, hv, ip, mac, network="net"):
        return {"name": name, "network": network, "hypervisor": hv, "ips": [ip], "mac": mac}

    def net(name, vni, cidr, **extra):
        return {"name": name, "vni": vni, "subnets": [{"cidr": f"{cidr}.0/24",
                                                        "gateway": f"{cidr}.254"}], **extra}

    def router(ip):  # each tenant routes between its two networks, and out
        return {"name": "edge", "interfaces": [{"network": "net"}, {"network": "db"}],
                "external_gateway": {"network": "internet", "ip": ip}}

    return {
        "controller": {"openflow": "tcp:172.30.9.1:16653", "api": API},
        "hypervisors": hvs,
        "external_networks": [{"name": "internet", "cidr": "203.0.113.0/24",
                               "gateway": "203.0.113.1", "hypervisors": ["hv3"],
                               "interface": "ext0"}],
        "tenants": [
            {"name": "blue", "networks": [net("net", 5001, "10.0.0", dhcp=True),
                                          net("db", 5003, "10.1.0")],
             "ports": [port("b1", "hv1", "10.0.0.1", "02:00:00:00:0b:01"),
                       port("b2", "hv2", "10.0.0.2", "02:00:00:00:0b:02"),
                       port("b3", "hv3", "10.0.0.3", "02:00:00:00:0b:03"),
                       port("b5", "hv1", "10.0.0.6", "02:00:00:00:0b:05"),
                       port("b7", "hv3", "10.1.0.7", "02:00:00:00:0b:07", "db")],
             "routers": [router("203.0.113.10")],
             "floating_ips": [{"ip": "203.0.113.20", "port": "b2"}]},
            {"name": "red", "networks": [net("net", 5002, "10.0.0"), net("db", 5004, "10.1.0")],
             "ports": [port("r1", "hv1", "10.0.0.1", "02:00:00:00:0c:01"),
                       port("r2", "hv2", "10.0.0.2", "02:00:00:00:0c:02"),
                       port("r4", "hv3", "10.0.0.4", "02:00:00:00:0c:04"),
                       port("r7", "hv2", "10.1.0.7", "02:00:00:00:0c:07", "db")],
             "routers": [router("203.0.113.11")]},
        ],
    }


class ControllerProcess:
    def __init__(self, cfg: Path, log: Path):
        self.cfg, self.log = cfg, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "netvirt.cli", "controller", str(self.cfg),
                 "--audit-interval", "3"], stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # by the PID we started, never by name
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Env:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.data = base_config(tmp / "run")
        self.base_file = self.write(self.data, "base.yaml")
        self.lab = Lab(state_dir=tmp / "lab", prefix="nvt")
        self.client = Client(API, timeout=10)
        self.ctl = ControllerProcess(self.base_file, tmp / "controller.log")

    def write(self, data: dict, name: str) -> Path:
        p = self.tmp / name
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        return p

    def variant(self, name: str, change) -> Path:
        data = copy.deepcopy(self.data)
        change(data)
        return self.write(data, name)

    def ns(self, vm: str) -> str:
        return self.lab.vm(vm)["netns"]

    def run(self, vm: str, *argv: str, timeout: float = 30, check: bool = False):
        return subprocess.run(self.lab.exec_argv(vm, list(argv)), capture_output=True, text=True,
                              timeout=timeout, check=check)

    def ping(self, vm: str, ip: str, count: int = 2) -> bool:
        return self.run(vm, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1",
                        ip).returncode == 0

    def ofctl(self, hv: str, *args: str) -> str:
        return self.lab.ovs(hv).ofctl(args[0], "br-int", *args[1:])

    def wait_in_sync(self, timeout: float = 20.0, revision: int | None = None) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.client.status()
                if last["in_sync"] and (revision is None or last["revision"] >= revision):
                    return last
            except Exception as e:  # the controller may still be starting
                last = repr(e)
            time.sleep(0.1)
        log = (self.tmp / "controller.log").read_text()[-3000:]
        raise AssertionError(f"not in sync after {timeout}s: {last}\n--- controller log:\n{log}")


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    # The session's own API token, in the environment the controller inherits and every
    # client reads: no /run/netvirt/api-token is made or left behind.
    saved = os.environ.get("NETVIRT_API_TOKEN")
    os.environ["NETVIRT_API_TOKEN"] = secrets.token_urlsafe(32)
    e = Env(tmp_path_factory.mktemp("lab"))
    try:
        e.lab.up(load_file(e.base_file))
        e.ctl.start()
        e.wait_in_sync(30)
        yield e
    finally:
        e.ctl.stop()
        e.lab.down()
        if saved is None:
            os.environ.pop("NETVIRT_API_TOKEN", None)
        else:
            os.environ["NETVIRT_API_TOKEN"] = saved
    leftovers = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True).stdout.split() if n.startswith("nvt-")]
    assert not leftovers, f"the lab left namespaces behind: {leftovers}"
