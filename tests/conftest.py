from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.producer import TailorProducer
from consumers.recommend_client import RecommendClient
from consumers.vector_store import VectorStore
from streams.services import active_collection
from tests.harness import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("tailor")
    s = Stack(root)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[TailorProducer]:
    async with TailorProducer(stack.settings) as p:
        yield p


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[RecommendClient]:
    async with RecommendClient(stack.settings, timeout_s=15) as c:
        yield c


@pytest.fixture
def store(stack: Stack) -> Iterator[VectorStore]:
    vs = VectorStore(stack.settings.milvus, active_collection(stack.settings))
    yield vs
    vs.close()


@pytest.fixture
async def closing() -> AsyncIterator[list[Any]]:
    """Enrichers a test opens, closed after it (aiohttp sessions, model threads, cache files)."""
    opened: list[Any] = []
    yield opened
    for thing in opened:
        await thing.aclose()
