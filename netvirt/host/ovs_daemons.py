"""A private ovsdb-server + ovs-vswitchd per emulated hypervisor, inside its network namespace.

Every path lives in the hypervisor's own directory and every call names its socket, so the
machine's own OVS is never addressed.  Daemons are stopped only by the PIDs recorded here,
after checking that the PID still runs our binary with our directory.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from netvirt.errors import LabError

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def _run(cmd: list[str], what: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        shown = " ".join(cmd)
        if len(shown) > 300:  # a bulk ovs-vsctl can be megabytes long
            shown = shown[:300] + f" ... ({len(cmd)} arguments)"
        raise LabError(f"{what} failed (exit {r.returncode}): {shown}\n{r.stderr.strip()[-2000:]}")
    return r.stdout


class PrivateOvs:
    def __init__(self, netns: str, rundir: Path, enable_dummy: bool = False):
        self.netns = netns
        self.dir = rundir
        self.enable_dummy = enable_dummy  # dummy ports: thousands of cheap interfaces
        self.db_sock = rundir / "db.sock"

    def env_cmd(self, *cmd: str) -> list[str]:
        d = str(self.dir)
        return ["ip", "netns", "exec", self.netns, "env", f"OVS_RUNDIR={d}", f"OVS_DBDIR={d}",
                f"OVS_LOGDIR={d}", f"OVS_SYSCONFDIR={d}", *cmd]

    def vsctl(self, *args: str, timeout: int = 10) -> str:
        return _run(self.env_cmd("ovs-vsctl", f"--db=unix:{self.db_sock}", f"--timeout={timeout}",
                                 *args), f"ovs-vsctl on {self.netns}")

    def ofctl(self, command: str, bridge: str, *args: str) -> str:
        """ovs-ofctl through the bridge's management socket: works from any namespace."""
        return _run(["ovs-ofctl", "-O", "OpenFlow13", command, f"unix:{self.dir}/{bridge}.mgmt",
                     *args], f"ovs-ofctl {command} on {self.netns}")

    def appctl(self, target: str, *args: str) -> str:
        return _run(["ovs-appctl", "-t", str(self.dir / f"{target}.ctl"), *args],
                    f"ovs-appctl {target} on {self.netns}")

    def start(self) -> dict[str, int]:
        if not SCHEMA.exists():
            raise LabError(f"{SCHEMA} is missing: install Debian's openvswitch-switch")
        self.dir.mkdir(parents=True, exist_ok=True)
        db = self.dir / "conf.db"
        db.unlink(missing_ok=True)
        _run(["ovsdb-tool", "create", str(db), str(SCHEMA)], "ovsdb-tool create")
        self._start_ovsdb()
        self.vsctl("--no-wait", "init")
        self._start_vswitchd()
        # what the host's provisioning sets; the node agent reports the kernel's facts
        ids = [f"external-ids:system-id={self.netns}", f"external-ids:hostname={self.netns}"]
        self.vsctl("set", "Open_vSwitch", ".", *ids)  # without --no-wait: vswitchd is ready
        return self.pids()

    def _start_ovsdb(self) -> None:
        d = self.dir
        _run(self.env_cmd("ovsdb-server", str(d / "conf.db"), f"--remote=punix:{self.db_sock}",
                          f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
                          f"--log-file={d}/ovsdb-server.log", "-vconsole:off", "--detach",
                          "--no-chdir"), f"ovsdb-server in {self.netns}")

    def _start_vswitchd(self) -> None:
        d = self.dir
        _run(self.env_cmd("ovs-vswitchd", f"unix:{self.db_sock}", f"--pidfile={d}/ovs-vswitchd.pid",
                          f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log",
                          "-vconsole:off", "--detach", "--no-chdir",
                          *(["--enable-dummy"] if self.enable_dummy else [])),
             f"ovs-vswitchd in {self.netns}")

    def pids(self) -> dict[str, int]:
        out = {}
        for name in ("ovsdb-server", "ovs-vswitchd"):
            f = self.dir / f"{name}.pid"
            if f.exists():
                out[name] = int(f.read_text().strip())
        return out

    def stop_vswitchd(self) -> None:
        """Stop ovs-vswitchd only: its flows are lost, OVSDB stays."""
        self.stop_daemon("ovs-vswitchd", self.pids().get("ovs-vswitchd"))

    def stop_ovsdb(self) -> None:
        """Stop ovsdb-server only, as a crash would: ovs-vswitchd keeps its flows (and, with
        no database, stops serving OpenFlow until it is back)."""
        self.stop_daemon("ovsdb-server", self.pids().get("ovsdb-server"))

    def start_ovsdb(self) -> int:
        self._start_ovsdb()
        return self.pids()["ovsdb-server"]

    def start_vswitchd(self) -> int:
        self._start_vswitchd()
        # A write without --no-wait returns once the new ovs-vswitchd has applied the
        # database; the counter also leaves a trace of the restart for whoever looks.
        n = int(self.vsctl("--if-exists", "get", "Open_vSwitch", ".",
                           "external-ids:netvirt-lab-restarts").strip().strip('"') or 0)
        self.vsctl("set", "Open_vSwitch", ".", f"external-ids:netvirt-lab-restarts={n + 1}")
        return self.pids()["ovs-vswitchd"]

    def is_ours(self, pid: int) -> bool:
        # A process in the middle of execve (`ip netns exec` becoming python) shows an
        # empty cmdline for a moment: look again rather than take it for someone else's.
        for _ in range(100):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
            if cmdline:
                return str(self.dir) in cmdline.replace(b"\0", b" ").decode()
            time.sleep(0.01)
        return False  # a kernel thread, never ours

    def stop_daemon(self, name: str, pid: int | None) -> None:
        if not pid or not self.is_ours(pid):
            return
        if name == "ovs-vswitchd":
            # --cleanup removes the datapath ports it created (br-int/br-phy tap devices)
            subprocess.run(["ovs-appctl", "-t", str(self.dir / "ovs-vswitchd.ctl"), "exit",
                            "--cleanup"], capture_output=True, timeout=10)
        else:
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not self.is_ours(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def stop(self, pids: dict[str, int]) -> None:
        for name in ("ovs-vswitchd", "ovsdb-server"):
            self.stop_daemon(name, pids.get(name))
