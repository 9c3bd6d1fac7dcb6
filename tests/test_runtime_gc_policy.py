"""The GC policy: full collections' survivors are frozen; a sweep still reclaims cycles."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import weakref

from syncstream.runtime.gc_policy import MIDDLE_EVERY, GcPolicy


class Node:
    """An object in a reference cycle: only the collector can free it."""

    def __init__(self) -> None:
        self.me = self


async def collected(ref: weakref.ref[Node], seconds: float = 2.0) -> bool:
    """Whether ``ref``'s object is freed within ``seconds`` (the sweeper runs meanwhile)."""
    for _ in range(int(seconds / 0.02)):
        if ref() is None:
            return True
        await asyncio.sleep(0.02)
    return ref() is None


async def test_survivors_are_frozen_and_a_sweep_reclaims_cycles_that_died_frozen() -> None:
    thresholds = gc.get_threshold()
    policy = GcPolicy(sweep_seconds=0.3)
    policy.start()
    try:
        assert gc.get_freeze_count() > 0  # start-up's objects
        assert gc.get_threshold() == (thresholds[0], MIDDLE_EVERY, thresholds[2])
        node = Node()
        ref = weakref.ref(node)
        gc.collect()  # a full collection: its survivors are frozen once the loop turns
        await asyncio.sleep(0)
        del node
        gc.collect()
        assert ref() is not None, "a frozen cycle waits for the sweep"
        assert await collected(ref), "the sweep unfroze and collected it"
        assert gc.get_freeze_count() > 0, "and froze the survivors again"
    finally:
        await policy.stop()
    assert policy._on_gc not in gc.callbacks and gc.get_threshold() == thresholds


async def test_a_sweep_comes_sooner_when_the_heap_grows() -> None:
    policy = GcPolicy(sweep_seconds=3600, growth=0.2, check_seconds=0.02)
    policy.start()
    try:
        base = gc.get_freeze_count()
        nodes = [Node() for _ in range(sys.getallocatedblocks() // 3)]  # the heap grows by 1/3
        ref = weakref.ref(nodes[0])
        gc.freeze()  # as the policy does after a full collection (no await: no sweep yet)
        assert gc.get_freeze_count() >= base + len(nodes)
        del nodes
        gc.collect()
        assert ref() is not None, "frozen cycles wait for a sweep"
        assert await collected(ref) and gc.get_freeze_count() < base + 1000
    finally:
        await policy.stop()


async def test_the_young_generation_is_collected_on_a_timer() -> None:
    """Steady churn keeps CPython's allocation count low; the policy collects anyway."""
    young: list[float] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            young.append(time.monotonic())

    policy = GcPolicy(sweep_seconds=3600, young_seconds=0.02)
    policy.start()
    gc.callbacks.append(count)
    try:
        gc.collect(0)
        young.clear()
        await asyncio.sleep(0.2)  # allocating next to nothing meanwhile
        assert len(young) >= 5
        await policy.stop()
        young.clear()
        await asyncio.sleep(0.1)
        assert not young, "stopped with the policy"
    finally:
        gc.callbacks.remove(count)
        await policy.stop()
