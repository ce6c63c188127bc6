"""Keep Python's cyclic garbage collector off the controller's latency.

Measured with bench/ and gc.callbacks:
- Loading a config, compiling flows and a reconcile pass allocate tens to hundreds of
  thousands of objects that either live on (configs, flows, the installed mirror) or die by
  reference count (os-ken messages).  The collector rescanned them again and again (it
  doubled compile time at 50k ports), and full collections over the ~250k long-lived
  objects of 1000 ports took 50-150 ms at random moments, collecting next to nothing.
- So gc_paused() holds the collector off such work, and when the last user leaves, freezes
  what the work left behind (gc.freeze): scanning it on the next collection would cost
  about what the work did.  Frozen objects are still freed by reference counting; only
  garbage *cycles* among them (a few dozen objects per revision, measured) wait for a full
  collection.
- That full collection depends on time and quiet, not on the state of any hypervisor: the
  controller's Collector thread runs one when FULL_COLLECTION_INTERVAL has passed since the
  last (or since the process started) and no bulk work has run for QUIET seconds.  (It
  used to wait for every hypervisor to be in sync, so one hypervisor that stayed down kept
  the cycles forever.)

Nested and concurrent users (one agent thread per hypervisor) share one pause.  Only the
controller process runs a Collector: a CLI command's frozen objects go with its exit."""
from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager

FULL_COLLECTION_INTERVAL = 600.0  # seconds
QUIET = 1.0  # seconds without bulk work before a full collection may run
_lock = threading.Lock()
_depth = 0
_was_enabled = False
_last_full = time.monotonic()  # "long ago" is measured from the process's start
_last_busy = time.monotonic()  # when bulk work last ended


@contextmanager
def gc_paused():
    global _depth, _was_enabled, _last_busy
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            _last_busy = time.monotonic()
            if _depth == 0 and _was_enabled:
                gc.freeze()
                gc.enable()


def collection_due() -> bool:
    return time.monotonic() - _last_full >= FULL_COLLECTION_INTERVAL


def collect_if_due() -> bool:
    """One full collection, of frozen objects too, if the last was long enough ago and no
    bulk work is under way or has run for QUIET seconds.  Returns whether it ran."""
    global _last_full
    with _lock:
        if _depth or time.monotonic() - _last_busy < QUIET or not collection_due():
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _last_full = time.monotonic()
        return True


class Collector:
    """A thread that tries collect_if_due() every ``every`` seconds."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gc-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            collect_if_due()
