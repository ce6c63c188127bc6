"""The collector is held off bulk work and kept from rescanning settled state, and a full
collection still runs regularly so that garbage cycles cannot pile up."""
import gc

from netvirt import gcpause


def test_paused_inside_nested_users_and_back_after_the_last():
    assert gc.isenabled()
    with gcpause.gc_paused():
        with gcpause.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_settle_freezes_what_is_alive_and_collects_fully_every_so_often():
    try:
        kept = [[i] for i in range(1000)]
        runs = [gcpause.settle() for _ in range(gcpause.FULL_COLLECTION_EVERY)]
        assert gc.get_freeze_count() >= len(kept)
        assert runs.count(True) == 1  # one full collection per FULL_COLLECTION_EVERY settles
        with gcpause.gc_paused():  # bulk work under way: nothing is settled
            assert gcpause.settle() is False
    finally:
        gc.unfreeze()
