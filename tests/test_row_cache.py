"""The worker's cache of Milvus rows: fresh rows served from memory, stale ones read again,
own writes never served stale."""

from __future__ import annotations

from typing import Any

import numpy as np

from consumers.row_cache import RowCache
from consumers.vector_store import ItemRow, VectorStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def row(pid: int, price: float = 1.0) -> dict[str, Any]:
    return {"product_id": pid, "vector": [0.5] * 4, "price": price}


def test_rows_are_fresh_for_ttl_then_read_again() -> None:
    clock = Clock()
    cache = RowCache(ttl_s=30, max_rows=10, clock=clock)
    cache.put([row(1), row(2)])
    found, missing = cache.lookup([1, 2, 3])
    assert sorted(found) == [1, 2] and missing == [3]
    assert isinstance(found[1]["vector"], np.ndarray) and found[1]["vector"].dtype == np.float32
    clock.now = 31
    assert cache.lookup([1]) == ({}, [1])


def test_oldest_rows_leave_first_and_forget_drops() -> None:
    cache = RowCache(ttl_s=30, max_rows=2)
    cache.put([row(1), row(2), row(3)])
    assert len(cache) == 2 and cache.lookup([1])[1] == [1]
    cache.forget([2])
    assert cache.lookup([2, 3])[1] == [2]


def test_zero_ttl_keeps_nothing() -> None:
    cache = RowCache(ttl_s=0, max_rows=10)
    cache.put([row(1)])
    assert len(cache) == 0


class FakeMilvus:
    """Only what VectorStore.get / upsert call; counts the ids read."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.read: list[int] = []

    def get(self, collection: str, ids: list[int], output_fields: list[str]) -> list[dict[str, Any]]:
        self.read += ids
        return [dict(self.rows[i]) for i in ids if i in self.rows]

    def upsert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self.rows[r["product_id"]] = r


def store_with(cache: RowCache) -> tuple[VectorStore, FakeMilvus]:
    store = VectorStore.__new__(VectorStore)  # no server: the cache logic is under test
    store.collection, store.cache = "t", cache
    store.client = FakeMilvus()  # type: ignore[assignment]
    return store, store.client  # type: ignore[return-value]


def item(pid: int, price: float) -> ItemRow:
    return ItemRow(
        product_id=pid, vector=[0.1] * 4, title="t", coarse="c", fine="f", gender="u", price=price, model_version="v"
    )


def test_store_reads_each_row_once_in_request_order_and_own_upserts_win() -> None:
    store, milvus = store_with(RowCache(ttl_s=30, max_rows=100))
    store.upsert([item(1, 10.0), item(2, 20.0)])
    assert list(store.get([2, 1, 9])) == [2, 1]  # missing ids are left out, order kept
    assert list(store.get([1, 2])) == [1, 2]
    assert sorted(milvus.read) == [1, 2, 9]  # the second get came from memory
    store.upsert([item(1, 99.0)])  # this process changed the product: never served stale
    assert store.get([1])[1]["price"] == 99.0


def test_lookups_are_counted_in_the_workers_metrics() -> None:
    from prometheus_client import REGISTRY

    from streams.metrics import count_row_cache

    def sample(outcome: str) -> float:
        return REGISTRY.get_sample_value("tailor_row_cache_rows_total", {"outcome": outcome}) or 0.0

    before = sample("hit"), sample("miss")
    cache = RowCache(ttl_s=30, max_rows=10, on_lookup=count_row_cache)
    cache.put([{"product_id": 1, "vector": [0.0]}])
    cache.lookup([1, 2, 3])
    assert (sample("hit") - before[0], sample("miss") - before[1]) == (1.0, 2.0)
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_read_that_raced_a_change_is_not_kept() -> None:
    clock = Clock()
    cache = RowCache(ttl_s=600, max_rows=10, clock=clock)
    clock.now = 100.0
    read_at = clock.now  # a read of products 1 and 2 begins ...
    clock.now = 100.5
    cache.forget([1])  # ... this process changes product 1 meanwhile ...
    clock.now = 101.0
    cache.put([row(1), row(2)], read_at)  # ... so the row read may be the old one
    found, missing = cache.lookup([1, 2])
    assert list(found) == [2] and missing == [1]
    cache.put([row(1)], 101.0)  # a read begun after its own write sees it: kept
    assert 1 in cache.lookup([1])[0]


def test_after_another_workers_notice_reads_are_kept_only_once_settled() -> None:
    clock = Clock()
    cache = RowCache(ttl_s=600, max_rows=10, clock=clock)
    cache.put([row(1)])
    cache.forget([1], settle_s=5)  # a notice: Milvus may show the other client's write late
    clock.now = 3.0
    cache.put([row(1)], clock.now)
    assert cache.lookup([1])[1] == [1]
    clock.now = 6.0
    cache.put([row(1)], clock.now)
    assert 1 in cache.lookup([1])[0]


def test_clear_drops_every_row() -> None:
    cache = RowCache(ttl_s=600, max_rows=10)
    cache.put([row(1), row(2)])
    cache.clear()
    assert len(cache) == 0 and cache.lookup([1, 2])[1] == [1, 2]


def test_change_notice_keys_name_product_ids() -> None:
    from streams.row_sync import product_ids

    assert product_ids([b"12", b"x", None, "\u00e9".encode(), b"7"]) == [12, 7]
