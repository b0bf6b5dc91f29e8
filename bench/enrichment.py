"""The `rules` enricher against the seed's LLM (issue: feature enrichment).

    python -m bench.enrichment [--hm-items 0] [--epochs 15] [--no-tower]

Reads ../shared/data. Four tables (each also a CSV under bench/results/):
  (a) kfashion with the RE block hidden, enriched by `rules` (lexicons + measurement-ratio
      geometry + STD mappings + MiniLM zero-shot) from STD + measurements: per RE key, coverage
      (share of the items whose original RE has the key that the rules also fill), exact agreement
      and embedding-similar agreement (MiniLM cosine of the two values >= 0.8) on the covered items.
      The geometry thresholds were fitted on these same 1,300 items (their cross-validated
      agreement is noted in consumers/enrichment/geometry.py), so these are in-sample figures.
  (b) item-tower purity@10 (fine and coarse, plus fine with the category tokens hidden, where the
      RE block has to carry the neighbourhood) trained on the original RE, on the rules RE, and
      with no RE at all.
  (c) H&M articles (RE from prod_name + detail_desc): coverage per RE key and the commonest value.
  (d) throughput of `rules` per item, zero-shot on and off, on 1,000 kfashion items with RE hidden
      (and 1,000 H&M articles, where the zero-shot step has work to do), one at a time through
      the async interface and as one batch.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.report import console, emit
from bench.vectors import without_category
from consumers.enrichment import RulesEnricher
from models.metrics import purity_at_k
from models.text_encoder import embed_texts
from models.train_item import TrainConfig, train_item_tower
from schemas.events import ProductCreated, ProductEnriched
from streams import datasets
from streams.catalog import load_catalog

SIMILAR = 0.8
HM_PRODUCTS = datasets.SHARED_DATA / "hm-sample" / "articles.csv"


def _similar(pairs: Sequence[tuple[str, str]]) -> list[bool]:
    """MiniLM cosine of each (rules value, original value) pair >= SIMILAR."""
    values = sorted({v for pair in pairs for v in pair})
    vectors = dict(zip(values, embed_texts(values), strict=True)) if values else {}
    return [a == b or float(vectors[a] @ vectors[b]) >= SIMILAR for a, b in pairs]


def agreement(original: Sequence[ProductEnriched], rules: Sequence[ProductEnriched]) -> list[dict[str, Any]]:
    """Per RE key of the original: coverage, exact and embedding-similar agreement."""
    by_id = {it.product_id: it for it in rules}
    seen: Counter[str] = Counter()
    pairs: dict[str, list[tuple[str, str]]] = {}
    for orig in original:
        mine = by_id[orig.product_id].re
        for key, values in orig.re.items():
            seen[key] += 1
            if mine.get(key):
                pairs.setdefault(key, []).append((mine[key][0], values[0]))
    rows, total, named = [], Counter(), Counter()
    for key in sorted(seen, key=lambda k: (k.startswith("structural."), k)):
        got = pairs.get(key, [])
        exact = sum(a == b for a, b in got)
        similar = sum(_similar(got))
        counts = {"n": seen[key], "both": len(got), "exact": exact, "similar": similar}
        total.update(counts)
        if key != "category":  # the seed's category is a free-form name ("long_boxy_coat")
            named.update(counts)
        rows.append(_agreement_row(key, seen[key], len(got), exact, similar))
    rows.append(_agreement_row("overall (all keys)", total["n"], total["both"], total["exact"], total["similar"]))
    rows.append(_agreement_row("overall without category", named["n"], named["both"], named["exact"], named["similar"]))
    return rows


def _agreement_row(key: str, n: int, both: int, exact: int, similar: int) -> dict[str, Any]:
    return {
        "row": key,
        "items with key": n,
        "coverage": both / n if n else 0.0,
        "exact": exact / both if both else 0.0,
        "similar (cos>=0.8)": similar / both if both else 0.0,
        "exact of all": exact / n if n else 0.0,
    }


def tower_rows(variants: dict[str, list[ProductEnriched]], cfg: TrainConfig) -> list[dict[str, Any]]:
    quiet: Callable[[str], None] = lambda _msg: None  # noqa: E731
    rows = []
    for label, items in variants.items():
        console.print(f"item tower: training on {label} ({len(items)} items)")
        trained = train_item_tower(items, cfg, log=quiet)
        enc = trained.encoder()
        fine = [f"{it.coarse}/{it.fine}" for it in items]
        coarse = [it.coarse for it in items]
        vectors = enc.encode_growing(items)
        hidden = enc.encode([without_category(it) for it in items])
        rows.append(
            {
                "row": label,
                "fine_purity@10": purity_at_k(vectors, fine),
                "coarse_purity@10": purity_at_k(vectors, coarse),
                "no-category fine_purity@10": purity_at_k(hidden, fine),
                "no-category coarse_purity@10": purity_at_k(hidden, coarse),
                "RE terms": len(trained.re_vocab),
                "train_s": trained.history.seconds,
            }
        )
    return rows


def coverage(items: Sequence[ProductEnriched]) -> list[dict[str, Any]]:
    counts: dict[str, Counter[str]] = {}
    for it in items:
        for key, values in it.re.items():
            counts.setdefault(key, Counter())[values[0]] += 1
    rows = []
    for key in sorted(counts, key=lambda k: (k.startswith("structural."), -counts[k].total())):
        value, n = counts[key].most_common(1)[0]
        rows.append(
            {
                "row": key,
                "coverage": counts[key].total() / len(items),
                "distinct values": len(counts[key]),
                "commonest value": value,
                "its share": n / counts[key].total(),
            }
        )
    rows.append({"row": "items with any RE key", "coverage": sum(bool(it.re) for it in items) / len(items)})
    return rows


def hidden_kfashion_products() -> list[ProductCreated]:
    products = list(load_catalog(str(datasets.SHARED_DATA / "kfashion-seed" / "*.json")))
    return [
        p.model_copy(update={"attributes": p.attributes.model_copy(update={"reinforced_feature_value": None})})
        for p in products
    ]


def hm_products(n: int, seed: int) -> list[ProductCreated]:
    """H&M articles as product events (the loader's mapping), not yet enriched."""
    with HM_PRODUCTS.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return [
        ProductCreated(
            product_id=int(r["article_id"]),
            title=r["prod_name"][:200] or r["product_type_name"],
            description=(r.get("detail_desc") or "")[:2000],
            attributes={
                "clothes": {
                    **{k: r[c][:100] for k, c in datasets.HM_STD_COLUMNS.items() if r.get(c)},
                    "category": f"{r['product_group_name']}/{r['product_type_name']}",
                }
            },
        )
        for r in rows
    ]


async def _one_by_one(enricher: RulesEnricher, products: Sequence[ProductCreated]) -> None:
    for p in products:
        await enricher.enrich(p)


def throughput(name: str, products: Sequence[ProductCreated]) -> list[dict[str, Any]]:
    rows = []
    for zero_shot in (False, True):
        enricher = RulesEnricher(zero_shot=zero_shot)
        t = time.perf_counter()
        enricher.enrich_now(products[:2])  # loads MiniLM and embeds the vocabulary (once per process)
        warm_s = time.perf_counter() - t
        t = time.perf_counter()
        asyncio.run(_one_by_one(enricher, products))
        single = time.perf_counter() - t
        t = time.perf_counter()
        found = enricher.enrich_now(products)
        batch = time.perf_counter() - t
        filled = sum(len(f.re) for f in found) / len(found)
        rows.append(
            {
                "data": name,
                "zero-shot": "on" if zero_shot else "off",
                "items": len(products),
                "items/s one by one": len(products) / single,
                "ms/item one by one": single * 1000 / len(products),
                "items/s batch": len(products) / batch,
                "RE keys per item": filled,
                "first-call warm-up s": warm_s,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hm-items", type=int, default=0, help="H&M articles for (c) (0 = all 11,800)")
    ap.add_argument("--throughput-items", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=15, help="epochs of each item-tower stage")
    ap.add_argument("--no-tower", action="store_true", help="skip (b)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    console.print("(d) throughput")
    products = hidden_kfashion_products()
    sample = random.Random(args.seed).sample(products, min(args.throughput_items, len(products)))
    rows = throughput("kfashion, RE hidden", sample)
    rows += throughput("H&M articles", hm_products(args.throughput_items, args.seed))
    emit("enrichment_throughput", "(d) rules enricher throughput on this CPU", rows)

    console.print("(a) kfashion: original RE vs rules RE from STD + measurements")
    original = datasets.kfashion()
    t = time.perf_counter()
    rules = datasets.kfashion(hide_re=True)
    console.print(f"enriched {len(rules)} kfashion items in {time.perf_counter() - t:.1f} s")
    title = "(a) kfashion, RE hidden: rules vs the seed's LLM values, per RE key"
    emit("enrichment_agreement", title, agreement(original, rules))

    console.print("(c) H&M articles")
    t = time.perf_counter()
    hm = datasets.hm_articles(limit=args.hm_items or None)
    console.print(f"enriched {len(hm)} H&M articles in {time.perf_counter() - t:.1f} s")
    emit("enrichment_hm_coverage", f"(c) H&M articles ({len(hm)}): RE coverage per key", coverage(hm))

    if not args.no_tower:
        cfg = TrainConfig(simcse_epochs=args.epochs, triplet_epochs=args.epochs, seed=args.seed)
        variants = {
            "original RE (seed LLM)": original,
            "rules RE (from STD + measurements)": rules,
            "no RE (STD only)": [it.model_copy(update={"re": {}}) for it in original],
        }
        emit("enrichment_tower", "(b) kfashion item tower: purity@10 by RE source", tower_rows(variants, cfg))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
