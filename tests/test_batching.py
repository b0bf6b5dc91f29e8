"""``streams.batching.MicroBatcher``: batches form only while earlier ones run, results go
back to their own callers, and one failing item fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streams.batching import MicroBatcher


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.release = asyncio.Event()
        self.release.set()

    async def process(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [i * 10 for i in items]


async def settle() -> None:
    """Let every ready task run (the submits, then the batches they start)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_batcher_starts_each_request_at_once() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec.process, max_batch=8, max_in_flight=2)
    assert [await batcher.submit(i) for i in range(3)] == [0, 10, 20]
    assert rec.batches == [[0], [1], [2]]


async def test_requests_arriving_while_batches_run_go_together_up_to_the_limit() -> None:
    rec = Recorder()
    rec.release.clear()  # the first batches hold until the rest have queued
    sizes: list[int] = []
    batcher = MicroBatcher(rec.process, max_batch=4, max_in_flight=2, on_batch=sizes.append)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(11)]
    await settle()  # every submit has run: two batches started, nine waiting
    assert batcher.in_flight == 2 and rec.batches == [[0], [1]]
    rec.release.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(11)]
    assert rec.batches == [[0], [1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    assert sizes == [1, 1, 4, 4, 1] and batcher.in_flight == 0


async def test_a_failing_item_fails_only_its_own_caller() -> None:
    rec = Recorder(fail_on=3)
    rec.release.clear()
    batcher = MicroBatcher(rec.process, max_batch=8, max_in_flight=1)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(6)]
    await settle()
    rec.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50]
    assert isinstance(results[3], ValueError) and "bad item 3" in str(results[3])
    assert rec.batches[:2] == [[0], [1, 2, 3, 4, 5]]  # then each of the failed batch alone
    assert rec.batches[2:] == [[1], [2], [3], [4], [5]]


async def test_a_cancelled_caller_is_left_out_and_the_others_are_answered() -> None:
    rec = Recorder()
    rec.release.clear()
    batcher = MicroBatcher(rec.process, max_batch=8, max_in_flight=1)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(4)]
    await settle()
    calls[2].cancel()
    rec.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == 0 and results[1] == 10 and results[3] == 30
    assert isinstance(results[2], asyncio.CancelledError)
    assert rec.batches == [[0], [1, 3]]


async def test_a_wrong_number_of_results_is_an_error_not_a_mix_up() -> None:
    async def one_result(items: Sequence[int]) -> list[int]:
        return [7]

    batcher = MicroBatcher(one_result, max_batch=8, max_in_flight=1)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    assert await asyncio.gather(*calls) == [7, 7, 7]  # [1, 2] failed together, then each alone

    async def no_result(items: Sequence[int]) -> list[int]:
        return []

    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await MicroBatcher(no_result, max_batch=8, max_in_flight=1).submit(1)
    with pytest.raises(ValueError):
        MicroBatcher(no_result, max_batch=0, max_in_flight=1)


async def test_a_batcher_after_another_answers_only_once_that_one_has_answered() -> None:
    """A model swap: the old version's batch still running, the new version's first request
    waits for it, so its reply never comes before an old one; later ones do not wait."""
    old_rec, new_rec = Recorder(), Recorder()
    old_rec.release.clear()  # the old version's batch is slow
    old = MicroBatcher(old_rec.process, max_batch=8, max_in_flight=1)
    new = MicroBatcher(new_rec.process, max_batch=8, max_in_flight=1)
    done: list[str] = []

    async def ask(batcher: MicroBatcher[int, int], item: int, tag: str) -> None:
        await batcher.submit(item)
        done.append(tag)

    first = asyncio.create_task(ask(old, 1, "old"))
    await settle()
    new.after(old)
    second = asyncio.create_task(ask(new, 2, "new"))
    await settle()
    assert new_rec.batches == [] and done == []  # waiting for the old batch, not answered
    old_rec.release.set()
    await asyncio.gather(first, second)
    assert done == ["old", "new"]
    assert await new.submit(3) == 30  # the gate is open from now on
