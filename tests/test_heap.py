"""The daemon's heap settling: garbage cycles are collected first, what survives is frozen out of later collections."""

from __future__ import annotations

import gc
import weakref

from gitops_kaito.service import heap


class _Node:
    other: _Node | None = None


def test_settle_collects_cycles_then_freezes_the_survivors() -> None:
    kept = _Node()
    cycle_a, cycle_b = _Node(), _Node()
    cycle_a.other, cycle_b.other = cycle_b, cycle_a
    gone = weakref.ref(cycle_a)
    del cycle_a, cycle_b
    try:
        heap.settle()
        assert gone() is None, "a garbage cycle survived the settle"
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects()), "a survivor is still tracked by the collector"
    finally:
        gc.unfreeze()
