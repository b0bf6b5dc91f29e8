"""Item-tower quality and cost (issue: item tower and its training).

    python -m bench.item_tower [--datasets kfashion,hm] [--hm-items 4000] [--epochs 30]

For each data set (kfashion seed, H&M articles; read from ../shared/data): category purity@10
of nearest neighbours (coarse and fine) for
  (a) the tower as the seeds design it, SimCSE then hierarchical triplet,
  (b) SimCSE only (stage 1; the untrained adapter is a random projection),
  (c) a plain concat-MLP ablation trained with the same recipe,
  (d) text embeddings only (all-MiniLM-L6-v2 over title, description and attribute text),
plus zero-shot purity (20% of items held out of training, embedded afterwards, queried
against all items), training time on this CPU and embedding latency per item.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence

import numpy as np

from bench.report import RESULTS, console, emit
from bench.vectors import without_category
from models.ablations import ConcatMLPTower
from models.item_tower import ItemTower
from models.metrics import purity_at_k
from models.plots import embedding_map, loss_curves
from models.text_encoder import embed_texts
from models.train_item import TrainConfig, TrainedTower, train_item_tower
from models.vocab import is_token_key
from schemas.events import ProductEnriched
from streams import datasets


def _labels(items: Sequence[ProductEnriched]) -> tuple[list[str], list[str]]:
    return [it.coarse for it in items], [f"{it.coarse}/{it.fine}" for it in items]


def _text(it: ProductEnriched) -> str:
    attrs = {**it.std, **it.re}
    parts = [f"{k}: {', '.join(v)}" for k, v in attrs.items() if is_token_key(k)]
    return f"{it.title}. {it.description} " + "; ".join(parts)


def _embed(trained: TrainedTower, items: Sequence[ProductEnriched]) -> np.ndarray:
    """Embed as the worker does: terms the training never saw grow the RE vocabulary."""
    return trained.encoder().encode_growing(items)


def _purity(vectors: np.ndarray, items: Sequence[ProductEnriched], queries: np.ndarray | None = None) -> dict:
    coarse, fine = _labels(items)
    return {
        "coarse_purity@10": purity_at_k(vectors, coarse, queries=queries),
        "fine_purity@10": purity_at_k(vectors, fine, queries=queries),
    }


def _without_re(it: ProductEnriched) -> ProductEnriched:
    return it.model_copy(update={"re": {}})


def _robustness(trained: TrainedTower, items: Sequence[ProductEnriched]) -> dict:
    """Fine purity when every item is embedded from STD + title only (no RE), and when
    the category tokens are hidden (labels stay the true ones)."""
    _, fine = _labels(items)
    no_re = _embed(trained, [_without_re(it) for it in items])
    no_cat = _embed(trained, [without_category(it) for it in items])
    return {"no-RE fine_purity@10": purity_at_k(no_re, fine), "no-category fine_purity@10": purity_at_k(no_cat, fine)}


def _latency(trained: TrainedTower, items: Sequence[ProductEnriched]) -> dict:
    enc = trained.encoder()
    one = [items[0]]
    enc.encode(one)
    singles = []
    for _ in range(100):
        t = time.perf_counter()
        enc.encode(one)
        singles.append((time.perf_counter() - t) * 1000)
    batch = list(items[:256])
    t = time.perf_counter()
    for _ in range(5):
        enc.encode(batch)
    per_item_256 = (time.perf_counter() - t) * 1000 / (5 * len(batch))
    return {"ms_per_item_batch1": float(np.median(singles)), "ms_per_item_batch256": per_item_256}


def _holdout(n: int, share: float, seed: int) -> tuple[list[int], np.ndarray]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    cut = int(n * share)
    return sorted(idx[cut:]), np.array(sorted(idx[:cut]))


def run_dataset(name: str, items: list[ProductEnriched], cfg: TrainConfig) -> list[dict]:
    quiet: Callable[[str], None] = lambda _msg: None  # noqa: E731
    rows = []
    train_idx, held = _holdout(len(items), 0.2, cfg.seed)
    variants: list[tuple[str, TrainConfig, type[ItemTower]]] = [
        ("(a) tower: SimCSE + hierarchical triplet", cfg, ItemTower),
        ("(b) tower: SimCSE only", cfg.model_copy(update={"triplet_epochs": 0}), ItemTower),
        ("(c) concat-MLP ablation, same recipe", cfg, ConcatMLPTower),
    ]
    for label, variant_cfg, cls in variants:
        console.print(f"[bold]{name}[/]: training {label} on {len(items)} items")
        trained = train_item_tower(items, variant_cfg, log=quiet, tower_cls=cls)
        vectors = _embed(trained, items)
        row = {"data": name, "model": label, **_purity(vectors, items), "train_s": trained.history.seconds}
        if variant_cfg.triplet_epochs:
            row.update(_robustness(trained, items))
        if cls is ItemTower and variant_cfg.triplet_epochs:
            row.update(_latency(trained, items))
            curves = {"stage 1: SimCSE (NT-Xent)": trained.history.simcse}
            curves["stage 2: hierarchical triplet"] = trained.history.triplet
            loss_curves(curves, RESULTS / f"item_tower_{name}_loss.png")
            picture = RESULTS / f"item_tower_{name}_map.png"
            embedding_map(vectors, _labels(items)[1], picture, f"{name}: (a) by category")
            console.print(f"{name}: zero-shot run, training on {len(train_idx)} items, {len(held)} held out")
            seen = train_item_tower([items[i] for i in train_idx], cfg, log=quiet)
            zero = _purity(_embed(seen, items), items, queries=held)
            row.update({f"zero-shot {k}": v for k, v in zero.items()})
        rows.append(row)
    console.print(f"[bold]{name}[/]: (d) MiniLM text embeddings")
    t = time.perf_counter()
    text_vecs = embed_texts([_text(it) for it in items], progress=True)
    text_s = time.perf_counter() - t
    row = {"data": name, "model": "(d) text embeddings only (MiniLM-L6)", **_purity(text_vecs, items)}
    no_cat = embed_texts([_text(without_category(it)) for it in items])
    row["no-category fine_purity@10"] = purity_at_k(no_cat, _labels(items)[1])
    row.update({f"zero-shot {k}": v for k, v in _purity(text_vecs, items, queries=held).items()})
    row["ms_per_item_batch256"] = text_s * 1000 / len(items)
    rows.append(row)
    return rows


def _sample(items: list[ProductEnriched], n: int, seed: int) -> list[ProductEnriched]:
    if n <= 0 or n >= len(items):
        return items
    return random.Random(seed).sample(items, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="kfashion,hm")
    ap.add_argument("--hm-items", type=int, default=4000, help="random H&M articles to use (0 = all 11,800)")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of each stage on kfashion")
    ap.add_argument("--hm-epochs", type=int, default=10, help="epochs of each stage on H&M")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    loaders = {
        "kfashion": (lambda: datasets.kfashion(), args.epochs),
        "hm": (lambda: _sample(datasets.hm_articles(), args.hm_items, args.seed), args.hm_epochs),
    }
    rows = []
    for name in args.datasets.split(","):
        load, epochs = loaders[name]
        cfg = TrainConfig(simcse_epochs=epochs, triplet_epochs=epochs, seed=args.seed)
        rows += run_dataset(name, load(), cfg)
        emit("item_tower", f"Item tower so far ({name} done)", rows)
    emit("item_tower", "Item tower: purity@10 of nearest neighbours (cosine), same items for every row", rows)


if __name__ == "__main__":
    main()
