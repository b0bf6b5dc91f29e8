"""Prometheus metrics of the worker (served on TAILOR_METRICS_PORT when set)."""

from prometheus_client import Counter, Histogram

EVENTS = Counter("tailor_events_total", "Events handled", ["topic", "outcome"])
DEADLETTERS = Counter("tailor_deadletters_total", "Events sent to the dead-letter topic", ["topic", "error"])
RE_TERMS = Counter("tailor_re_vocab_new_terms_total", "RE vocabulary terms added at run time")
REQUEST_SECONDS = Histogram(
    "tailor_request_seconds",
    "Recommendation request handling time",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ROW_CACHE = Counter("tailor_row_cache_rows_total", "Milvus rows looked up in the worker's row cache", ["outcome"])
_HITS, _MISSES = ROW_CACHE.labels("hit"), ROW_CACHE.labels("miss")


def count_row_cache(hits: int, misses: int) -> None:
    """``RowCache.on_lookup``: hit rate = hit / (hit + miss) of ``tailor_row_cache_rows_total``."""
    _HITS.inc(hits)
    _MISSES.inc(misses)


REQUEST_BATCH = Histogram(
    "tailor_request_batch_size",
    "Recommendation requests answered together in one micro-batch (streams.batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
