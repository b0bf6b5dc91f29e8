"""The benchmarks' own logic, without servers (they run as ``python -m bench.<name>``)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from bench import synth
from bench.ann_recall import recall
from bench.ingest import crossing
from bench.latency import Samples, stage_rows
from bench.system import open_loop, ratios, stats
from schemas.events import RecommendReply


def test_synthetic_catalog_is_deterministic_and_consistent() -> None:
    a, b = list(synth.products(30, seed=4)), list(synth.products(30, seed=4))
    fields = {"event_id", "event_time", "created_at"}  # fresh per event
    assert [p.model_dump(exclude=fields) for p in a] == [p.model_dump(exclude=fields) for p in b]
    assert [p.product_id for p in a] == list(range(synth.FIRST_ID, synth.FIRST_ID + 30))
    assert all(p.attributes.re() for p in a)
    bare = synth.without_re(a[0])
    assert not bare.attributes.re() and bare.title == a[0].title
    enriched = synth.as_enriched(a[0])
    assert enriched.re == a[0].attributes.re() and enriched.enricher == "source"


def test_open_loop_does_not_wait_for_slow_calls() -> None:
    running, most = 0, 0

    async def slow(_i: int, _due: float) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.2)  # far longer than the 0.02 s between calls
        running -= 1

    asyncio.run(open_loop(50, 0.2, slow))
    assert most > 1  # calls overlapped: each went out on schedule, not after the last one


def test_stats_ratios_and_stage_rows() -> None:
    rows = [{"p50_ms": 20.0, "p99_ms": 40.0}, {"p50_ms": 10.0, "p99_ms": 10.0}]
    ratios(rows, rows[1])
    assert rows[0]["x_p50"] == 2.0 and rows[0]["x_p99"] == 4.0
    assert stats([1.0, 2.0, 3.0])["p50_ms"] == 2.0 and stats([])["n"] == 0
    samples = Samples()
    due = time.perf_counter()
    samples.add(due, RecommendReply(request_id="r", user_id="u", timings_ms={"ann_ms": 1.0, "total_ms": 2.0}))
    samples.add(due, None, "timeout")
    assert len(samples.latency) == 2 and len(samples.kafka_round_trip()) == 1
    assert samples.errors == {"timeout": 1}
    assert [r["stage"] for r in stage_rows("w", samples)] == ["ann", "total"]


def test_recall_counts_ties_and_crossing_interpolates() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.1])
    exact = np.array([0, 1, 2, 3])
    assert recall([0, 2, 3], exact, scores, 2) == (0.5, 1.0)  # item 2 ties with the 2nd
    assert crossing([(0.0, 0.0), (1.0, 100.0), (2.0, 200.0)], 150.0) == 1.5
