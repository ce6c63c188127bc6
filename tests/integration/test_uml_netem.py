"""Latency, jitter and loss for real: this machine's kernel has no sch_netem, so the node's
tc code runs inside User-mode Linux (Debian's user-mode-linux: a real 6.1 kernel that boots
in seconds, with this machine's / as its read-only root), against a veth there
(uml_guest.py), and what the kernel then does to packets is measured."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UML = "/usr/bin/linux.uml"
MODULES = Path("/usr/lib/uml/modules")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not Path(UML).exists() or not MODULES.is_dir() or not shutil.which("iperf3"),
    reason="needs Debian's user-mode-linux and iperf3 (scripts/setup installs them)")


def _init(tmp: Path) -> Path:
    """The UML's init: its own /proc, /sys and /run, where its temporary files go (the root
    is this machine's, read only), the qdisc and veth modules of the UML kernel, then the
    guest program."""
    (kver,) = [d.name for d in MODULES.iterdir()]
    mods = MODULES / kver / "kernel"
    init = tmp / "init.sh"
    init.write_text(f"""#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys
mount -t tmpfs run /run; mkdir -p /run/netns /run/tmp
export TMPDIR=/run/tmp  # not a tmpfs over /tmp: the checkout (and pytest's tmp) may be there
for m in net/sched/sch_netem net/sched/sch_htb drivers/net/veth; do insmod {mods}/$m.ko; done
ip link set lo up
cd {REPO}
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={REPO} {sys.executable} tests/integration/uml_guest.py
echo "guest exit $?"
halt -f
""")
    init.chmod(0o755)
    return init


@pytest.fixture(scope="module")
def guest(tmp_path_factory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("uml")
    init = _init(tmp)
    # UML keeps its memory in a file under TMPDIR (unlinked at once): ours, not /tmp's
    r = subprocess.run([UML, "mem=384M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/",
                        "ro", f"init={init}", "con=null", "con0=fd:0,fd:1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "TMPDIR": str(tmp)})
    out: dict[str, list[dict]] = {}
    for line in r.stdout.splitlines():
        if line.startswith('{"what"'):
            d = json.loads(line)
            out.setdefault(d.pop("what"), []).append(d)
    assert "done" in out, f"the UML guest did not finish:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    print("UML:", {k: out[k] for k in ("delay", "loss", "rate")})
    return out


def test_the_uml_kernel_has_netem_and_the_node_probe_sees_it(guest):
    found = guest["qdiscs"][0]["found"]
    assert found["netem"] and found["htb"], found


def test_delay_with_jitter_gives_the_mean_and_a_spread_that_reflects_it(guest):
    first = guest["apply"][0]
    assert first["ops"] == ["vx0: tc replace netem"] and first["again"] == [], first
    assert "delay 50ms  10ms" in first["tc"] or "delay 50ms 10ms" in first["tc"], first["tc"]
    d = guest["delay"][0]
    assert d["received"] == d["sent"] == 300, d
    assert abs(d["avg_ms"] - 50) <= 5, d  # within 10% of the target
    # uniform over 50 +- 10 ms: a standard deviation of 10 / sqrt(3) = 5.8 ms (ping's mdev)
    assert 3.5 <= d["mdev_ms"] <= 8, d


def test_loss_of_5_percent_over_2000_packets_is_inside_the_binomial_99_percent_interval(guest):
    assert "loss 5%" in guest["apply"][1]["tc"], guest["apply"][1]
    d = guest["loss"][0]
    n, p = d["sent"], 0.05
    lost = n - d["received"]
    half = 2.576 * math.sqrt(n * p * (1 - p))
    assert n == 2000 and n * p - half <= lost <= n * p + half, (lost, d)


def test_rate_and_delay_together_hold_both(guest):
    a = guest["apply"][2]
    assert [op.split()[-1] for op in a["ops"]] == ["netem", "htb", "htb-class", "netem"], a
    assert a["again"] == [], a
    r = guest["rate"][0]
    assert abs(r["mbps"] - 10) <= 1, r
    assert abs(r["avg_ms"] - 50) <= 5, r


def test_removing_the_policy_leaves_no_qdisc_of_ours(guest):
    a = guest["apply"][3]
    assert a["ops"] == ["vx0: tc delete htb"], a
    assert "4e56:" not in a["tc"] and "4e57:" not in a["tc"], a
