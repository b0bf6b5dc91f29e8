"""Recently read Milvus rows, kept in the process for a bounded time.

Every request reads the rows of the user's history and of its candidates (vector, STD/RE
features, price). Popular items and a user's recent items are read again and again, and
each read is a round trip to Milvus plus decoding 128 floats per row in Python. Rows are
kept ``ttl_s`` seconds. A product's row is forgotten when it changes: at once for this
process's own upserts, and within a fraction of a second for any worker's, which the worker
learns from ``tailor.products.enriched`` (``streams.row_sync``); the TTL only bounds what a
missed notice could leave stale.

A read that raced a change must not be cached: a row read before the write (or, for a
change notice from another worker, shortly after it: Milvus may show another client's write
late) would otherwise stay stale for the whole TTL. So ``forget`` notes from when a read
is certain to see the change, and ``put`` drops the rows read earlier."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

Row = dict[str, Any]


def _compact(row: Row) -> Row:
    if "vector" not in row:
        return row
    return {**row, "vector": np.asarray(row["vector"], dtype=np.float32)}


class RowCache:
    def __init__(
        self,
        ttl_s: float,
        max_rows: int,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[int, int], None] | None = None,
    ) -> None:
        """``on_lookup(hits, misses)`` after each lookup: the worker counts them in its
        metrics (this layer knows no Prometheus)."""
        self.ttl_s = ttl_s
        self.max_rows = max_rows
        self.clock = clock
        self.on_lookup = on_lookup
        self._rows: OrderedDict[int, tuple[float, Row]] = OrderedDict()  # oldest read first
        self._changed: dict[int, float] = {}  # product id -> reads from then on see its change
        self._lock = threading.Lock()  # Milvus reads run in worker threads
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, ids: Sequence[int]) -> tuple[dict[int, Row], list[int]]:
        """(the fresh cached rows, the ids to read from Milvus)."""
        found: dict[int, Row] = {}
        missing: list[int] = []
        now = self.clock()
        with self._lock:
            for pid in ids:
                entry = self._rows.get(pid)
                if entry is not None and now - entry[0] <= self.ttl_s:
                    found[pid] = entry[1]
                else:
                    missing.append(pid)
            self.hits += len(found)
            self.misses += len(missing)
        if self.on_lookup is not None:
            self.on_lookup(len(found), len(missing))
        return found, missing

    def put(self, rows: Iterable[Row], read_at: float | None = None) -> None:
        """Rows as read (or written): the vector becomes one float32 array, 8x smaller
        than pymilvus' list of Python floats. ``read_at``: the ``clock()`` reading taken
        before the read began (default: now); a row of a product whose change that read may
        have missed is not kept (see the module's note)."""
        if self.ttl_s <= 0 or self.max_rows <= 0:
            return
        now = self.clock()
        fresh = [_compact(row) for row in rows]
        with self._lock:
            began = now if read_at is None else read_at
            for row in fresh:
                pid = int(row["product_id"])
                if self._changed.get(pid, -float("inf")) >= began:
                    continue
                self._rows.pop(pid, None)
                self._rows[pid] = (now, row)
            while len(self._rows) > self.max_rows:
                self._rows.popitem(last=False)

    def forget(self, ids: Iterable[int], settle_s: float = 0.0) -> None:
        """These products changed: their rows go, and reads that began before ``settle_s``
        from now are not kept (0 for this process's own writes, which its Milvus client
        sees at once)."""
        now = self.clock()
        with self._lock:
            for pid in ids:
                self._rows.pop(int(pid), None)
                self._changed[int(pid)] = now + settle_s
            if len(self._changed) > 2 * self.max_rows:  # bounded: only recent changes matter
                horizon = now - 600  # no read takes 10 minutes
                self._changed = {p: t for p, t in self._changed.items() if t >= horizon}

    def clear(self) -> None:
        """Forget every row (e.g. change notices may have been missed)."""
        with self._lock:
            self._rows.clear()
