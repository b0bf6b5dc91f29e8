"""``tailor retrain`` against a running worker (real broker, real Milvus, real worker):
the new version is announced on ``tailor.models.updated`` and the worker swaps to it while
requests keep flowing: every request is answered, none with an error, and after the swap
the replies come from the new version, out of the new item space's collection, which
holds the whole catalog and keeps receiving new products."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumers.producer import TailorProducer
from consumers.recommend_client import RecommendClient
from consumers.vector_store import VectorStore
from models import registry
from schemas.events import Interaction, RecommendReply
from tests.factories import FINE_TO_CODE, product
from tests.harness import Stack

pytestmark = pytest.mark.integration

FINES = list(FINE_TO_CODE)
USERS = 12


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory):
    s = Stack(tmp_path_factory.mktemp("swap"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


async def _wait_count(store: VectorStore, n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not (store.exists() and store.count() >= n):
        assert time.monotonic() < deadline, f"{store.collection}: fewer than {n} rows"
        await asyncio.sleep(0.3)


async def _seed(stack: Stack) -> list[int]:
    ids = [5000 + 10 * f + j for f in range(len(FINES)) for j in range(6)]
    async with TailorProducer(stack.settings) as shop:
        for pid in ids:
            await shop.publish_product(product(pid, FINES[(pid - 5000) // 10], ["Black", "Navy", "Beige"][pid % 3]))
        for u in range(USERS):
            fine = (u % len(FINES)) * 10
            for t, j in enumerate([0, 1, 2, 3, 4, 5, 0, 2]):
                pid = 5000 + fine + j
                await shop.publish_interaction(Interaction(event_id=f"sw-{u}-{t}", user_id=f"sw-{u}", product_id=pid))
    return ids


async def _ask_continuously(stack: Stack, stop: asyncio.Event, replies: list[RecommendReply]) -> None:
    """A request every 50 ms, each awaited in its own task (a slow swap cannot hide
    behind a blocked sender); replies are appended as they come. A RecommendTimeout
    (no reply in 30 s) propagates and fails the test."""
    async with RecommendClient(stack.settings, timeout_s=30) as client:

        async def one(user: str) -> None:
            replies.append(await client.recommend(user, k=5, diversity_lambda=0.7))

        pending = []
        i = 0
        while not stop.is_set():
            pending.append(asyncio.create_task(one(f"sw-{i % USERS}")))
            i += 1
            await asyncio.sleep(0.05)
        await asyncio.gather(*pending)


def _retrain(stack: Stack, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "retrain", "--user-epochs", "2", "--deepfm-epochs", "1"]
        + ["--diversity-epochs", "1", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    version = registry.latest_version(Path(stack.env["TAILOR_DATA_DIR"]) / "models")
    assert version
    return version


async def test_retrain_publishes_a_version_the_worker_swaps_to_without_dropping_requests(own_stack: Stack) -> None:
    stack = own_stack
    ids = await _seed(stack)
    first = registry.latest_manifest(stack.settings.models_path)
    assert first is not None
    old_store = VectorStore(stack.settings.milvus, stack.settings.collection_for(first.space))
    await _wait_count(old_store, len(ids))
    await asyncio.sleep(2)  # the clicks reach the sequence table

    stop, replies = asyncio.Event(), []
    load = asyncio.create_task(_ask_continuously(stack, stop, replies))
    await asyncio.sleep(1)
    version = await asyncio.to_thread(_retrain, stack, "--item-tower", "--item-epochs", "2", "--version", "swap-1")
    deadline = time.monotonic() + 120
    while not any(r.model_version == version for r in replies):
        assert not load.done(), load.exception()
        assert time.monotonic() < deadline, "the worker never served the new version"
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # requests keep coming after the swap too
    stop.set()
    await load

    served = [r.model_version for r in replies]
    assert all(r.strategy != "error" for r in replies), [r.error for r in replies if r.error][:3]
    assert first.version in served and version in served
    swapped_at = served.index(version)
    assert all(v == version for v in served[swapped_at:])  # no flapping back once swapped
    assert len(replies) >= 40

    # After the swap: the new item space's collection holds the whole catalog.
    new = registry.latest_manifest(stack.settings.models_path)
    assert new is not None and new.version == version and new.space == version
    assert new.components == ["item_tower", "user_tower", "deepfm", "diversity", "cooccurrence"]
    new_store = VectorStore(stack.settings.milvus, stack.settings.collection_for(new.space))
    await _wait_count(new_store, len(ids))
