"""Micro-batching of concurrent calls: the requests waiting while earlier ones are being
answered are answered together, in one call of ``process``.

Under load a worker holds many requests at once (``request_concurrency``); answered one by
one, each pays the fixed cost of every model forward and every Milvus call (a DeepFM
forward costs about the same for 100 rows as for 800). Batching adds no wait: a request
that finds a free slot starts at once (a batch of one when the worker is idle); only the
requests that arrive while ``max_in_flight`` batches are running wait, and they then go
together, so batches grow exactly when the worker is busy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class MicroBatcher(Generic[T, R]):
    """``await submit(item)`` -> ``process([..., item, ...])``'s result for that item.

    ``process`` takes a batch and returns one result per item, in order. If it raises, each
    item of that batch is processed again alone, so one bad item fails only its own caller."""

    def __init__(
        self,
        process: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        max_batch: int,
        max_in_flight: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._process = process
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._on_batch = on_batch  # called with each batch's size (a metric)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()  # strong references: a bare task may be collected
        self._gate: asyncio.Task[None] | None = None  # see ``after``

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start_batches()
        return await future

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def after(self, previous: MicroBatcher[Any, Any]) -> None:
        """Run no batch before ``previous`` has answered what it holds now (a model swap:
        the old version's last batch may be bigger and slower than the new one's first, and
        its replies must not come after a reply of the new version). Call it before the
        first ``submit``: items submitted meanwhile wait, at most one batch of ``previous``."""
        self._gate = asyncio.get_running_loop().create_task(previous.drained())

    async def drained(self) -> None:
        """Return once no batch is running (a finished batch starts the pending ones)."""
        while self._running:
            await asyncio.wait(set(self._running))

    def _start_batches(self) -> None:
        while self._pending and len(self._running) < self.max_in_flight:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_batches()

    async def _call(self, items: list[T]) -> Sequence[R]:
        results = await self._process(items)
        if len(results) != len(items):
            raise RuntimeError(f"process returned {len(results)} results for {len(items)} items")
        return results

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self._gate is not None:
            await self._gate
        live = [(item, fut) for item, fut in batch if not fut.done()]  # a cancelled caller is skipped
        if not live:
            return
        if self._on_batch is not None:
            self._on_batch(len(live))
        try:
            results = await self._call([item for item, _ in live])
        except Exception as exc:  # noqa: BLE001 - isolated below: each item alone
            if len(live) == 1:
                _settle(live[0][1], None, exc)
                return
            log.warning("a batch of %d failed; answering its items one by one", len(live), exc_info=True)
            for item, fut in live:
                try:
                    (result,) = await self._call([item])
                    _settle(fut, result, None)
                except Exception as exc:  # noqa: BLE001 - that caller gets the error
                    _settle(fut, None, exc)
            return
        for (_, fut), result in zip(live, results, strict=True):
            _settle(fut, result, None)


def _settle(future: asyncio.Future[R], result: R | None, exc: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled) meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]
