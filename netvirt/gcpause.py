"""Pause Python's cyclic garbage collector around bulk allocation.

Loading a config and compiling flows allocate hundreds of thousands of objects that all stay
alive; the collector rescans them again and again and doubled compile time at 50k ports.
Nested and concurrent users (one agent thread per hypervisor) share one pause: the collector
runs again once the last of them is done."""
from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


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
