"""Persisted enrichment cache: content hash -> validated RE attributes (one sqlite file).

A replayed or duplicated ProductCreated finds its answer here, so replays cost no LLM call.
The key covers everything that decides the answer (backend, model, prompt, product content),
so a new model or prompt version asks again instead of reusing stale answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from schemas.attributes import FlatAttributes
from schemas.events import ProductCreated

log = logging.getLogger("tailor.enrichment.cache")
_FLAT = TypeAdapter(FlatAttributes)


def content_key(scope: str, product: ProductCreated) -> str:
    """sha256 over the backend scope (name, model, prompt version) and the product content
    the prompt shows: title, description, STD attributes (ids and times are left out)."""
    std = product.attributes.std()
    material = [scope, product.title, product.description, sorted(std.items())]
    return hashlib.sha256(json.dumps(material, ensure_ascii=False).encode()).hexdigest()


class EnrichmentCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by worker threads (asyncio.to_thread): the lock serialises them;
        # WAL + busy timeout let another worker process use the same file.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS enrichment ("
                "key TEXT PRIMARY KEY, re TEXT NOT NULL, backend TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _get(self, key: str) -> FlatAttributes | None:
        with self._lock:
            row = self._conn.execute("SELECT re FROM enrichment WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return _FLAT.validate_json(row[0])
        except ValidationError as exc:  # a damaged row is a miss: the backend answers again
            log.warning("cache row %s is invalid, ignored: %s", key[:12], exc.errors()[:1])
            return None

    def _put(self, key: str, re: FlatAttributes, backend: str) -> None:
        data = json.dumps(re, ensure_ascii=False)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO enrichment (key, re, backend, created) VALUES (?, ?, ?, ?)",
                (key, data, backend, time.time()),
            )

    async def get(self, key: str) -> FlatAttributes | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, re: FlatAttributes, backend: str) -> None:
        await asyncio.to_thread(self._put, key, re, backend)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM enrichment").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
