"""The lab stops and waits for its daemons by recorded PID; a PID counts as ours only if
its command line names our run directory.  No root, no OVS: plain child processes."""
from __future__ import annotations

import subprocess
import sys
import time

from netvirt.host.ovs_daemons import PrivateOvs


def test_a_process_in_the_middle_of_exec_is_still_ours(tmp_path):
    # `ip netns exec ... python` execs twice; /proc/PID/cmdline is empty for a moment
    # during each exec.  `env` execs the same way without needing a namespace.
    ovs = PrivateOvs("unused", tmp_path)
    for _ in range(10):
        proc = subprocess.Popen(["env", sys.executable, "-c", "import time; time.sleep(5)",
                                 str(tmp_path)])
        try:
            start = time.monotonic()
            while time.monotonic() - start < 0.2:  # the exec happens in these first moments
                assert ovs.is_ours(proc.pid)
        finally:
            proc.kill()
            proc.wait()


def test_someone_elses_process_and_a_gone_one_are_not_ours(tmp_path):
    ovs = PrivateOvs("unused", tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert not ovs.is_ours(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not ovs.is_ours(proc.pid)
