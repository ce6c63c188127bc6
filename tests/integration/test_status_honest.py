"""`status` is honest: after each fault it is unhealthy while the connectivity matrix is not
full, and once the fault is repaired it is healthy with the matrix full again.

(A hypervisor whose ovsdb-server is down is unhealthy while its traffic still flows: the
management plane is down, nothing can be changed there; test_overlay.py has that case.)"""
from __future__ import annotations

import time

import pytest

from netvirt.config import load_file
from netvirt.host.reach import matrix


def _full(env) -> bool:
    return matrix(env.lab, load_file(env.base_file).config).as_expected


def _healthy(env) -> bool:
    return env.client.status()["healthy"]


def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _vm_link(up: bool):
    return lambda env: env.lab.guest_link("red/r2", up)


def _guest_gone(env):
    env.lab.up(load_file(env.variant("no-r2.yaml", lambda d: d["tenants"][1]["ports"].pop(1))))


def _guest_back(env):
    env.lab.up(load_file(env.base_file))  # new devices under the same names


FAULTS = {
    "a VM's link down": (_vm_link(False), _vm_link(True)),
    "a VM's device deleted, then made again": (_guest_gone, _guest_back),
    "ovs-vswitchd stopped": (lambda env: env.lab.stop_vswitchd("hv3"),
                             lambda env: env.lab.start_vswitchd("hv3")),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_status_is_unhealthy_exactly_while_traffic_is_broken(env, fault):
    env.wait_in_sync(20)
    assert _until(lambda: _healthy(env) and _full(env), 20), "not healthy and full to begin with"
    cause, repair = FAULTS[fault]
    cause(env)
    try:
        assert _until(lambda: not _healthy(env), 5), f"{fault}: status stayed healthy"
        assert not _full(env), f"{fault}: the matrix is full, yet status says unhealthy"
        assert not _healthy(env), f"{fault}: status went healthy while still broken"
    finally:
        repair(env)
    assert _until(lambda: _healthy(env) and _full(env), 30), \
        f"{fault}: not healthy with a full matrix after the repair: {env.client.status()}"
