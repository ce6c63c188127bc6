"""Send crafted frames from one VM and see which VMs receive them (scapy, in the VMs'
namespaces, through scapy_probe.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = str(Path(__file__).with_name("scapy_probe.py"))


def receivers(env, source: str, frames: list[dict], vms: list[str], copies: int = 2,
              seconds: float = 4) -> dict[str, set[str]]:
    """marker -> the VMs (other than ``source``) that saw a frame carrying it.  Every frame
    is sent ``copies`` times, so one lost frame cannot pass for isolation."""
    sniffers = {vm: subprocess.Popen(env.lab.exec_argv(vm, [sys.executable, PROBE, "sniff", "eth0",
                                                            str(seconds)]),
                                     stdout=subprocess.PIPE, text=True) for vm in vms}
    try:
        for p in sniffers.values():
            assert p.stdout.readline().strip() == "READY"
        for _ in range(copies):
            env.run(source, sys.executable, PROBE, "send", "eth0", json.dumps(frames), check=True)
        seen = {vm: json.loads(p.communicate(timeout=20)[0].strip().splitlines()[-1])
                for vm, p in sniffers.items()}
    finally:
        for p in sniffers.values():
            p.kill()
            p.wait()
    return {f["marker"]: {vm for vm, counts in seen.items() if counts.get(f["marker"]) and vm != source}
            for f in frames}
