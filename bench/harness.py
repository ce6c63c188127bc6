"""The benchmarks' harness: a lab of emulated hypervisors (the project's own Lab, with dummy
ports), the controller as a real process, and measurements of it (CPU seconds, peak RSS).
Everything is torn down by recorded PIDs and the lab's own state."""
from __future__ import annotations

import argparse

import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from netvirt.client import Client
from netvirt.config import load_file
from netvirt.host.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUNDIR = Path("/run/netvirt-bench")
API = "127.0.0.1:18281"
OPENFLOW = "tcp:172.30.8.1:6653"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# the benchmarks' own API token, inherited by the controllers they start: no
# /run/netvirt/api-token is made or left behind
os.environ.setdefault("NETVIRT_API_TOKEN", secrets.token_urlsafe(32))


def calibration_ms() -> float:
    """A fixed piece of pure-Python work, timed in the run it describes (median of 5): these
    machines are shared, and this says how fast this one was while the run took place."""
    def once() -> float:
        t0 = time.perf_counter()
        sum(i * i for i in range(2_000_000))
        return (time.perf_counter() - t0) * 1000
    return statistics.median(once() for _ in range(5))


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())
    mem = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal"))) // (1 << 20)
    ovs = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"{os.cpu_count()} x {cpu}, {mem} GiB, kernel {platform.release()}, {ovs}"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def wait_bindable(endpoint: str, timeout: float = 10.0) -> None:
    """Wait until the lab's management address can be listened on: a controller started
    before it is there exits at once ("Cannot assign requested address"), which a 10-
    hypervisor lab made that happen in 2 of 3 cold starts."""
    host, port = endpoint.removeprefix("tcp:").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, int(port)))
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{host}:{port} is not bindable after {timeout}s: "
                                       f"{e.strerror}") from None
        time.sleep(0.05)


class Controller:
    """`netvirt controller` as a child process."""

    def __init__(self, log: Path, audit_interval: float = 60):
        self.log, self.audit = log, audit_interval
        self.proc: subprocess.Popen | None = None
        self.client = Client(API, timeout=60)

    def start(self) -> float:
        wait_bindable(OPENFLOW)
        t0 = time.monotonic()
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "netvirt.cli", "controller", "--openflow", OPENFLOW,
                 "--api", API, "--audit-interval", str(self.audit)], stdout=out,
                stderr=subprocess.STDOUT)
        while True:
            try:
                self.client.status()
                return time.monotonic() - t0
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"controller exited; see {self.log}") from None
                time.sleep(0.02)

    def start_with(self, cfg: Path) -> None:
        wait_bindable(OPENFLOW)
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "netvirt.cli", "controller", str(cfg), "--openflow",
                 OPENFLOW, "--api", API, "--audit-interval", str(self.audit)], stdout=out,
                stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def peak_rss_mib(self) -> float:
        for ln in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def wait_in_sync(self, revision: int, timeout: float = 300) -> dict:
        """Converged: every hypervisor in sync at ``revision`` and healthy, so every port of the
        config is on its switch with all its flows (not just the ports seen so far)."""
        self.client.timeout = timeout + 10
        # one long-poll, no busy polling
        st = self.client.wait_in_sync(revision, timeout, healthy=True)
        if not (st["revision"] >= revision and st["in_sync"] and st["healthy"]):
            raise RuntimeError(f"not converged after {timeout}s: {json.dumps(st)[:2000]}")
        return st


class Bench:
    """A lab + controller for one benchmark case."""

    def __init__(self, name: str, cfg: dict):
        self.dir = RUNDIR / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg_file = self.dir / "tenants.yaml"
        self.write(cfg)
        self.lab = Lab(state_dir=self.dir / "lab", prefix="nvb")
        self.ctl = Controller(self.dir / "controller.log")

    def write(self, cfg: dict, path: Path | None = None) -> Path:
        path = path or self.cfg_file
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def __enter__(self):
        self.lab.up(load_file(self.cfg_file), enable_dummy=True)
        return self

    def __exit__(self, *exc):
        self.ctl.stop()
        self.lab.down()

    def apply(self, path: Path | None = None) -> tuple[float, dict]:
        """Seconds from the apply request until every hypervisor is in sync."""
        lc = load_file(path or self.cfg_file)
        self.apply_started_at = time.time()  # wall clock, to compare with the agents' stamps
        t0 = time.monotonic()
        rev = self.ctl.client.apply(lc)["revision"]
        st = self.ctl.wait_in_sync(rev)
        return time.monotonic() - t0, st

    def switch_flows(self, hv: str) -> int:
        out = self.lab.ovs(hv).ofctl("dump-aggregate", "br-int")
        return int(out.split("flow_count=")[1].split()[0])


def flow_mods(st: dict) -> int:
    return sum(h["flow_mods_sent"] for h in st["hypervisors"].values())


def save(name: str, rows: list[dict], extra: dict | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    calib = calibration_ms()
    path.write_text(json.dumps({"benchmark": name, "machine": machine(),
                                "calibration_ms": calib,
                                "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows,
                                **(extra or {})}, indent=1))
    print(f"machine speed: the calibration loop took {calib:.0f} ms (lower is faster)")
    return path


def table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(widths[c]) for c in cols)]
    lines += ["  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return "-" if v is None else str(v)


def median(xs) -> float:
    return statistics.median(xs)


def repeat_and_seconds(doc: str | None) -> argparse.Namespace:
    """The command line of a benchmark that repeats cases and runs traffic for a while."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case (default 3)")
    ap.add_argument("--seconds", type=float, default=4, help="traffic per run (default 4)")
    return ap.parse_args()
