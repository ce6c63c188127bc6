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
  collection, which collect_if_due() runs at most every FULL_COLLECTION_INTERVAL seconds at
  a quiet moment (the service calls it once everything has converged).

Nested and concurrent users (one agent thread per hypervisor) share one pause."""
from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False
FULL_COLLECTION_INTERVAL = 600.0  # seconds
_last_full = time.monotonic()


@contextmanager
def gc_paused():
    global _depth, _was_enabled
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
            if _depth == 0 and _was_enabled:
                gc.freeze()
                gc.enable()


def collection_due() -> bool:
    return time.monotonic() - _last_full >= FULL_COLLECTION_INTERVAL


def collect_if_due() -> bool:
    """One full collection, of frozen objects too, if the last was long enough ago and no
    bulk work is under way.  Returns whether it ran."""
    global _last_full
    with _lock:
        if _depth or not collection_due():
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _last_full = time.monotonic()
        return True
