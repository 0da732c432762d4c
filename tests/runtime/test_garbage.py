"""The loop keeps long-lived objects out of the cyclic collector's scans, without leaking what a reload drops."""

from __future__ import annotations

import gc
import weakref

from kinfer_runtime.pipeline.garbage import YOUNG_GENERATION_THRESHOLD, settle_garbage_collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_objects_alive_at_settling_are_frozen_and_a_dropped_cycle_is_freed_at_the_next_settling() -> None:
    try:
        old_model = Node()
        settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        frozen = gc.get_freeze_count()
        gone = weakref.ref(old_model)
        del old_model  # a reload drops the previous version; its cycles sit in the frozen generation
        gc.collect()
        assert gone() is not None, "a full collection does not see frozen objects"
        settle_garbage_collector()  # what the loop does after a reload
        assert gone() is None, "the dropped cycle was freed"
        assert gc.get_freeze_count() > 0 and gc.get_freeze_count() <= frozen + 1000
    finally:
        gc.unfreeze()


def test_settling_raises_the_young_generations_threshold_and_keeps_the_older_ones() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        settle_garbage_collector()
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
