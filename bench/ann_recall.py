"""ANN recall of the configured Milvus index vs exact search, on real item vectors.

    python -m bench.ann_recall [--models DIR] [--synthetic 100000] [--queries 500] [--train-per-set]

Sets: the H&M articles and the kfashion seed (``../shared/data``; a set whose files are
absent is skipped with a message), each enriched with the rules enricher (MiniLM zero-shot
off unless ``--zero-shot``: ~130x faster, bench/enrichment) and embedded by an item tower;
plus ``--synthetic`` products of the sample's generator family, as the real sets are small
(H&M ~11.8k, kfashion ~1.3k). The tower: the current trained model, LATEST of ``--models``
or of TAILOR_MODEL_DIR (one is trained on the sample when there is none,
``bench.system.ensure_model``); with ``--train-per-set``, each real set is embedded by a tower
trained on that set (``--epochs`` SimCSE + ``--epochs`` triplet, ``streams.training``; cached
under var/bench-models-ann-<set>, delete it to retrain; minutes per epoch on a busy 2-core CPU).

Each set goes into a fresh collection of an embedded Milvus through ``VectorStore``
(``ensure_collection``: the worker's AUTOINDEX, IP metric); ``--queries`` random items of the
set are the queries. Baseline in the same run: exact search by numpy brute force (IP over
all vectors, one query at a time). recall@k = share of the exact top-k ids the index
returns; "ties" also counts a returned item whose exact score equals the k-th exact score
(near-duplicate items make the exact top-k ambiguous). Latency per query, top-100.
Writes bench/results/ann_recall.csv and ann_recall.png.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import synth
from bench.report import console, emit
from bench.system import BENCH_MODELS, ensure_model, item_row, plot_latency, stats
from consumers.vector_store import VectorStore
from models import registry
from models.encoder import ItemEncoder
from models.vocab import ReVocab
from schemas.events import ProductEnriched
from streams.runtime import free_port, milvus_process

BATCH = 1000
HM_FILE = Path("hm-sample") / "articles.csv"
KFASHION_GLOB = str(Path("kfashion-seed") / "*.json")


def model_for(data: str, models: Path | None, epochs: int, per_set: bool) -> Path:
    """The current trained model (``--models``, else TAILOR_MODEL_DIR's LATEST); with
    ``per_set`` a tower trained on ``data`` itself (cached)."""
    if not per_set:
        return ensure_model(models)
    target = BENCH_MODELS.parent / f"bench-models-ann-{data}"
    if not registry.is_trained(target):
        from models.train_item import TrainConfig
        from streams.training import train_and_publish

        console.print(f"[yellow]training an item tower on {data} ({epochs}+{epochs} epochs) into {target}")
        train_and_publish(data, target, TrainConfig(simcse_epochs=epochs, triplet_epochs=epochs))
    return target


def embed(items: list[ProductEnriched], models: Path) -> tuple[np.ndarray, str]:
    model = registry.load(models, registry.latest_version(models) or "")
    vocab = ReVocab(model.re_vocab_path)
    vocab.path = None  # grow in memory only: the model's snapshot stays as shipped
    encoder = ItemEncoder(model.tower, model.std_vocab, vocab, model.manifest.version)
    vectors = np.concatenate([encoder.encode_growing(items[i : i + 2000]) for i in range(0, len(items), 2000)])
    return vectors.astype(np.float32), model.manifest.version


def real_sets() -> list[tuple[str, Callable[[], list[ProductEnriched]], str]]:
    from streams import datasets

    found = []
    if (datasets.SHARED_DATA / HM_FILE).exists():
        found.append(("H&M articles", datasets.hm_articles, "hm"))
    else:
        console.print(f"[yellow]skipping H&M: {datasets.SHARED_DATA / HM_FILE} is absent")
    if glob.glob(str(datasets.SHARED_DATA / KFASHION_GLOB)):
        found.append(("kfashion seed", datasets.kfashion, "kfashion"))
    else:
        console.print(f"[yellow]skipping kfashion: no {datasets.SHARED_DATA / KFASHION_GLOB}")
    return found


def recall(returned: list[int], exact_ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[float, float]:
    """(strict, tie-aware) recall@k of ``returned`` (row indices) against the exact top-k."""
    got = returned[:k]
    strict = len(set(got) & set(exact_ids[:k].tolist())) / k
    kth = scores[exact_ids[k - 1]]
    ties = min(k, sum(1 for i in got if scores[i] >= kth - 1e-5)) / k
    return strict, ties


def measure(store: VectorStore, name: str, vectors: np.ndarray, n_queries: int, seed: int = 0) -> dict[str, Any]:
    store.ensure_collection()
    t0 = time.perf_counter()
    for start in range(0, len(vectors), BATCH):
        store.upsert([item_row(start + i, v) for i, v in enumerate(vectors[start : start + BATCH])])
    store.client.flush(store.collection)
    console.print(f"{name}: {len(vectors):,} vectors into Milvus in {time.perf_counter() - t0:.0f}s")
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)]
    for q in queries[:20]:  # warm-up: segment loading, index build on first search
        store.search(q, 100)
    k_max = min(100, len(vectors))
    ann_ms, exact_ms, r10, r100, t10, t100 = [], [], [], [], [], []
    for q in queries:
        t = time.perf_counter()
        hits = store.search(q, k_max)
        ann_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        scores = vectors @ q
        top = np.argpartition(-scores, k_max - 1)[:k_max]
        exact = top[np.argsort(-scores[top])]
        exact_ms.append((time.perf_counter() - t) * 1000)
        returned = [h.product_id for h in hits]
        for k, strict_out, ties_out in ((10, r10, t10), (k_max, r100, t100)):
            s, tie = recall(returned, exact, scores, k)
            strict_out.append(s)
            ties_out.append(tie)
    index = store.client.describe_index(store.collection, "vector")
    return {
        "set": name,
        "items": len(vectors),
        # identical vectors (same attributes and title) tie in any exact top-k
        "distinct": len(np.unique(np.round(vectors, 5), axis=0)),
        "queries": len(queries),
        "index": f"{index.get('index_type', '?')}/{index.get('metric_type', '?')}",
        "recall@10": float(np.mean(r10)),
        "recall@100": float(np.mean(r100)),
        "recall@10_ties": float(np.mean(t10)),
        "recall@100_ties": float(np.mean(t100)),
        "ann_ms": ann_ms,
        "exact_ms": exact_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", type=Path, help="model dir (LATEST); default TAILOR_MODEL_DIR (trained on sample if none)"
    )
    ap.add_argument("--train-per-set", action="store_true", help="embed each real set with a tower trained on it")
    ap.add_argument("--synthetic", type=int, default=100_000, help="synthetic items (0: none)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=5, help="epochs per stage with --train-per-set")
    ap.add_argument("--zero-shot", action="store_true", help="rules enricher with MiniLM zero-shot (slow)")
    ap.add_argument("--limit", type=int, help="use at most this many items of each real set")
    args = ap.parse_args()
    os.environ["TAILOR_RULES_ZERO_SHOT"] = "true" if args.zero_shot else "false"
    sets: list[tuple[str, np.ndarray, str]] = []
    for name, load, data in real_sets():
        models = model_for(data, args.models, args.epochs, args.train_per_set)
        t0 = time.perf_counter()
        items = load()[: args.limit]
        vectors, version = embed(items, models)
        console.print(
            f"{name}: {len(items):,} items enriched and embedded by {version} in {time.perf_counter() - t0:.0f}s"
        )
        sets.append((name, vectors, version))
    if args.synthetic:
        models = ensure_model(args.models)
        items = [synth.as_enriched(p) for p in synth.products(args.synthetic)]
        vectors, version = embed(items, models)
        sets.append((f"synthetic {args.synthetic:,}", vectors, version))
    if not sets:
        raise SystemExit("no item set to measure")
    rows: list[dict[str, Any]] = []
    series: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tailor-recall-") as tmp:
        port = free_port()
        server = milvus_process(Path(tmp), port)
        server.start()
        try:
            server.wait_port(port, 120)
            for i, (name, vectors, version) in enumerate(sets):
                store = VectorStore(f"http://127.0.0.1:{port}", f"recall_{i}", connect_timeout_s=120)
                res = measure(store, name, vectors, args.queries, seed=i)
                store.close()
                ann, exact = res.pop("ann_ms"), res.pop("exact_ms")
                a, e = stats(ann), stats(exact)
                index = res.pop("index")
                base = {"set": name, "search": "exact: numpy, IP", "items": res["items"], "distinct": res["distinct"]}
                base["model"] = version
                rows.append({**base, "recall@10": 1.0, "recall@100": 1.0, **_lat(e)})
                rows.append(
                    {
                        **res,
                        "search": f"Milvus {index}",
                        "model": version,
                        **_lat(a),
                        "x_p50": a["p50_ms"] / e["p50_ms"],
                        "x_p99": a["p99_ms"] / e["p99_ms"],
                    }
                )
                series[f"{name}: Milvus"] = ann
                series[f"{name}: exact"] = exact
        finally:
            server.stop(30)
    for row in rows:
        row.pop("queries", None)
    title = (
        f"ANN recall, top-100, {args.queries} queries per set (items of the set); milvus-lite server, VectorStore "
        "collection (AUTOINDEX, IP); baseline exact numpy search in the same run; x_ = Milvus / exact latency"
    )
    emit("ann_recall", title, rows)
    plot_latency("ann_recall", "ANN vs exact search latency per query (top-100)", series)


def _lat(s: dict[str, float]) -> dict[str, float]:
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}


if __name__ == "__main__":
    main()
