"""Keep Python's cyclic garbage collector off the controller's latency.

Two things cost time, both measured (bench/churn.py, gc.callbacks):
- Loading a config and compiling flows allocate hundreds of thousands of objects that all
  stay alive; the collector rescanned them again and again and doubled compile time at 50k
  ports.  gc_paused() holds it off around such bulk work.
- The state that lives from one revision to the next (configs, flows, OVSDB rows: about
  250,000 tracked objects at 1000 ports) made every full collection take 50-100 ms at a
  random moment, collecting next to nothing.  settle() freezes that state once a revision
  has converged (gc.freeze), so the collector only scans what was allocated since.  Frozen
  objects are still freed by reference counting when a later revision drops them; only
  garbage *cycles* among them would stay (a few dozen objects per revision, measured), so
  every 64th settle() runs one full collection first: what could be held is bounded, and
  a steady controller pays ~1 ms per revision on average instead of 100 ms at random.

Nested and concurrent users (one agent thread per hypervisor) share one pause: the
collector runs again once the last of them is done."""
from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False
_settled = 0  # settle() calls since the last full collection
FULL_COLLECTION_EVERY = 64  # settles; counted, as gc.get_freeze_count() walks the heap


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
                gc.enable()


def settle() -> bool:
    """Freeze what is alive now (call once a revision has converged).  Returns whether it ran
    a full collection first."""
    global _settled
    with _lock:
        if _depth:  # bulk work under way: what it allocates is not settled yet
            return False
        full = _settled % FULL_COLLECTION_EVERY == FULL_COLLECTION_EVERY - 1
        if full:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        _settled += 1
        return full
