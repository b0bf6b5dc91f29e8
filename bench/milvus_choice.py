"""Which Milvus for the embedded runtime? Measured on real item vectors, through the same
``VectorStore`` code the worker uses (AUTOINDEX, IP, Session consistency).

    python -m bench.milvus_choice [--items 100000] [--server-bin PATH/milvus-server]

Backends: milvus-lite 2.5.1's C++ engine served on loopback (what ``tailor up`` runs) and,
with ``--server-bin``, the ``milvus==2.3.5`` embedded standalone server (install it in a
side venv: ``pip install milvus==2.3.5 'setuptools<70' 'marshmallow<4'``). Columns:
insert rate, top-100 search latency (plain and with a 50-id ``not in`` filter as the
request path sends), recall@100 against exact search, and freshness (upsert -> found by
search on the same client).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.report import emit, percentiles
from bench.vectors import item_vectors, variants
from consumers.vector_store import ItemRow, VectorStore
from schemas.settings import Settings
from streams.runtime import ChildProcess, free_port, milvus_process

BATCH = 1000


def _rows(vectors: np.ndarray, start: int) -> list[ItemRow]:
    return [
        ItemRow(
            product_id=start + i,
            vector=v.tolist(),
            title=f"item {start + i}",
            coarse="c",
            fine="f",
            gender="unisex",
            price=10.0,
            model_version="bench",
        )
        for i, v in enumerate(vectors)
    ]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def measure(store: VectorStore, vectors: np.ndarray, queries: np.ndarray, name: str) -> dict[str, object]:
    store.ensure_collection()
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(vectors), BATCH), desc=f"{name}: insert", leave=False):
        store.upsert(_rows(vectors[start : start + BATCH], start))
    insert_s = time.perf_counter() - t0
    store.client.flush(store.collection)
    for q in queries[:20]:  # warm-up (segment loading, index build on first search)
        store.search(q, 100)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :100]
    plain, recalls = [], []
    for q, truth in zip(queries, exact, strict=True):
        t = time.perf_counter()
        hits = store.search(q, 100)
        plain.append((time.perf_counter() - t) * 1000)
        recalls.append(len({h.product_id for h in hits} & set(truth.tolist())) / 100)
    exclude = "product_id not in [" + ", ".join(str(i) for i in range(0, 5000, 100)) + "]"
    filtered = [_timed(lambda q=q: store.search(q, 100, exclude)) for q in queries]
    fresh = []
    # Fresh random directions: unlike catalog copies, nothing already stored ties with them.
    new = np.random.default_rng(1).normal(size=(30, vectors.shape[1])).astype(np.float32)
    for i, v in enumerate(new / np.linalg.norm(new, axis=1, keepdims=True)):
        pid = 10_000_000 + i
        t = time.perf_counter()
        store.upsert(_rows(v[None, :], pid))
        while store.search(v, 1)[0].product_id != pid:
            if time.perf_counter() - t > 10:
                break
        fresh.append((time.perf_counter() - t) * 1000)
    p, f, fr = percentiles(plain), percentiles(filtered), percentiles(fresh)
    return {
        "backend": name,
        "items": len(vectors),
        "insert_rows_per_s": len(vectors) / insert_s,
        "search_p50_ms": p["p50"],
        "search_p99_ms": p["p99"],
        "filtered_p50_ms": f["p50"],
        "filtered_p99_ms": f["p99"],
        "recall@100": float(np.mean(recalls)),
        "fresh_p50_ms": fr["p50"],
        "fresh_p99_ms": fr["p99"],
    }


def _server_235(binary: str, root: Path) -> tuple[ChildProcess, int]:
    port = free_port()
    argv = [binary, "--data", str(root / "m235"), "--proxy-port", str(port), "--etcd-port", str(free_port())]
    return ChildProcess("milvus-2.3.5", argv, root / "m235.log"), port


def run(items: int, n_queries: int, server_bin: str | None) -> None:
    settings = Settings()
    real_items, base, version = item_vectors(settings)
    vectors = variants(base, items, sigma=0.03)
    rng = np.random.default_rng(42)
    queries = variants(base[rng.choice(len(base), n_queries)], n_queries, 0.0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        backends: list[tuple[str, ChildProcess, int]] = [
            ("milvus-lite 2.5.1 (gRPC server)", milvus_process(root, port), port)
        ]
        if server_bin:
            child, p = _server_235(server_bin, root)
            backends.append(("milvus 2.3.5 standalone", child, p))
        for name, child, p in backends:
            child.start()
            try:
                child.wait_port(p, 120)
                store = VectorStore(f"http://127.0.0.1:{p}", "bench_items", connect_timeout_s=120)
                rows.append(measure(store, vectors, queries, name))
                store.close()
            finally:
                child.stop(30)
    emit(
        "milvus_choice",
        f"Milvus backends: {items:,} vectors ({len(real_items)} real items from model {version} + "
        f"perturbed variants), {n_queries} queries, top-100",
        rows,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--server-bin", help="path of milvus==2.3.5's milvus-server to compare with")
    args = ap.parse_args()
    run(args.items, args.queries, args.server_bin)


if __name__ == "__main__":
    main()
