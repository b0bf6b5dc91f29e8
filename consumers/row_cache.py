"""Recently read Milvus rows, kept in the process for a bounded time.

Every request reads the rows of the user's history and of its candidates (vector, STD/RE
features, price). Popular items and a user's recent items are read again and again, and
each read is a round trip to Milvus plus decoding 128 floats per row in Python. Rows are
kept ``ttl_s`` seconds: this process's own upserts replace them at once; a change written
by another worker is seen after at most ``ttl_s`` (vectors change only with a product
update, which is rare next to the reads)."""

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

    def put(self, rows: Iterable[Row]) -> None:
        """Rows as read (or written): the vector becomes one float32 array, 8x smaller
        than pymilvus' list of Python floats."""
        if self.ttl_s <= 0 or self.max_rows <= 0:
            return
        now = self.clock()
        fresh = [_compact(row) for row in rows]
        with self._lock:
            for row in fresh:
                pid = int(row["product_id"])
                self._rows.pop(pid, None)
                self._rows[pid] = (now, row)
            while len(self._rows) > self.max_rows:
                self._rows.popitem(last=False)

    def forget(self, ids: Iterable[int]) -> None:
        with self._lock:
            for pid in ids:
                self._rows.pop(int(pid), None)
