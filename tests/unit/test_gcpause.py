"""The collector is held off bulk work, what the work left behind is frozen so that it is
not rescanned, and a full collection still runs when it is due, so garbage cycles among
frozen objects cannot pile up."""
import gc
import time
import weakref

from netvirt import gcpause


def test_paused_inside_nested_users_and_back_after_the_last():
    assert gc.isenabled()
    with gcpause.gc_paused():
        with gcpause.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_what_bulk_work_keeps_is_frozen_and_cycles_go_at_the_next_full_collection(monkeypatch):
    class Node:
        pass

    try:
        with gcpause.gc_paused():
            kept = [[i] for i in range(1000)]
            cycle = Node()
            cycle.me = cycle
        assert gc.get_freeze_count() >= len(kept)
        ref = weakref.ref(cycle)
        del cycle
        gc.collect()  # a normal collection does not look at frozen objects
        assert ref() is not None
        # long ago, measured from now: the monotonic clock may be young (a fresh boot)
        long_ago = time.monotonic() - gcpause.FULL_COLLECTION_INTERVAL - 1
        monkeypatch.setattr(gcpause, "_last_full", long_ago)
        with gcpause.gc_paused():  # bulk work under way: it waits
            assert gcpause.collect_if_due() is False
        assert gcpause.collection_due()
        assert gcpause.collect_if_due() is False, "bulk work has just ended: not quiet yet"
        monkeypatch.setattr(gcpause, "_last_busy", time.monotonic() - gcpause.QUIET)
        assert gcpause.collect_if_due() is True
        assert not gcpause.collection_due()
        assert ref() is None
    finally:
        gc.unfreeze()
