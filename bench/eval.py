"""Offline recommendation quality on real data (issue 5, "Measure and report").

    python -m bench.eval [--data hm,movielens] [--quick] [--threads 1]

Per data set the interaction log and its split are built ONCE (per-user leave-last-out by
time; a seeded 20% of the interacted items cold, i.e. absent from training, see
``models.interactions``), then every row is fitted and asked on that same split. Rows are
``bench.baselines.Ranker``s: the baselines here plus whatever ``bench/eval_towers.py``'s
``tower_rankers(log, split)`` returns when that module exists. One table per data set
(stdout + ``bench/results/eval_<data>.csv``) and a bar chart (``eval_<data>.png``).

Columns: Recall@10 / NDCG@10 / Recall@50 over warm targets (the whole catalog ranked, the
case's history excluded), coverage@10 (share of the catalog in any top-10), ILD@10 (mean
pairwise cosine distance of each top-10, with ONE vector table for every row: the first row
that exposes ``item_vectors``, else one-hot categories), cold Recall@10 (targets that are
cold items), fit_s (wall seconds to fit on this machine; rows that share one fitted
system all show that system's time), and "R@10 - item-kNN [95% CI]":
the row's Recall@10 minus item-kNN's on the same cases with a paired bootstrap interval
(an interval that contains 0 means the test set cannot tell the two apart).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.baselines import Ranker, baselines  # noqa: E402
from bench.report import RESULTS, console, emit  # noqa: E402
from models.interactions import InteractionLog, Split, leave_last_out  # noqa: E402
from models.metrics import (  # noqa: E402
    VectorTable,
    catalog_coverage,
    hits_at_k,
    mean_ild,
    ndcg_at_k,
    paired_bootstrap,
    recall_at_k,
)
from schemas.events import ProductEnriched  # noqa: E402
from streams.datasets import hm_log, movielens_log  # noqa: E402

# --quick: a slice of users so a smoke run takes seconds, not minutes.
LOADERS: dict[str, Callable[[bool], InteractionLog]] = {
    "hm": lambda quick: hm_log(max_users=150 if quick else None),
    "movielens": lambda quick: movielens_log(max_users=60 if quick else None),
}
METRICS = ["Recall@10", "NDCG@10", "Recall@50", "coverage@10", "ILD@10", "cold Recall@10"]
REFERENCE = "item-kNN"  # the strongest simple baseline: every row's Recall@10 is compared with it
BEYOND = ["coverage@10", "ILD@10"]  # beyond-accuracy metrics, on their own axis in the chart


def rows_for(log: InteractionLog, split: Split, quick: bool = False) -> list[Ranker]:
    """Every row of the table, in order: the baselines, then the towers' rows when
    ``bench/eval_towers.py`` exists (written separately; an import error inside it is a
    real error and is not swallowed)."""
    rows: list[Ranker] = baselines(quick)
    if importlib.util.find_spec("bench.eval_towers") is not None:
        from bench.eval_towers import tower_rankers  # type: ignore[import-not-found,unused-ignore]

        # --quick reaches the towers too when their factory takes it.
        extra = {"quick": quick} if "quick" in inspect.signature(tower_rankers).parameters else {}
        rows.extend(tower_rankers(log, split, **extra))
    return rows


@dataclass
class Answers:
    """One fitted row's rankings of the shared split."""

    ranker: Ranker
    fit_s: float
    top10: np.ndarray
    top50: np.ndarray
    cold10: np.ndarray


def run_row(ranker: Ranker, log: InteractionLog, split: Split) -> Answers:
    console.print(f"[bold]{ranker.name}[/]: fitting")
    started = time.perf_counter()
    ranker.fit(log, split)
    fitted = time.perf_counter()
    # A row of a shared system (the towers' stages) fits in ~0 s once the first row fitted
    # it: report the shared fit, so no row reads as free.
    fit_s = float(getattr(ranker, "fit_seconds", fitted - started))
    # Asked separately for 10 and 50: a reranker's top-10 need not be its top-50's prefix.
    top10, top50 = ranker.rank(split.tests, 10), ranker.rank(split.tests, 50)
    answers = Answers(ranker, fit_s, top10, top50, ranker.rank(split.cold_tests, 10))
    console.print(f"  fit {fit_s:.1f} s, ranked in {time.perf_counter() - fitted:.1f} s")
    return answers


def category_vectors(items: list[ProductEnriched]) -> dict[int, np.ndarray]:
    """One-hot coarse + one-hot fine category, L2-normalised: cosine distance 0 for the same
    fine category, 0.5 for the same coarse one only, 1 otherwise."""
    coarse = {c: i for i, c in enumerate(sorted({it.coarse for it in items}))}
    fine = {f: i for i, f in enumerate(sorted({f"{it.coarse}/{it.fine}" for it in items}))}
    vectors = {}
    for it in items:
        v = np.zeros(len(coarse) + len(fine))
        v[coarse[it.coarse]] = v[len(coarse) + fine[f"{it.coarse}/{it.fine}"]] = 1.0
        vectors[it.product_id] = v / np.sqrt(2.0)
    return vectors


def ild_table(answers: list[Answers], log: InteractionLog) -> tuple[VectorTable, str]:
    """The single vector table every row's ILD is measured with, and a note saying which."""
    for a in answers:
        vectors = getattr(a.ranker, "item_vectors", None)
        if vectors:
            return vectors, f"ILD over {a.ranker.name}'s item vectors"
    return category_vectors(log.items), "ILD over one-hot coarse+fine category vectors (no row has item vectors)"


def versus(a: Answers, reference: Answers | None, split: Split) -> str:
    """``a``'s Recall@10 minus the reference row's, with its paired 95% bootstrap interval."""
    if reference is None or not split.tests:
        return ""
    warm = np.array([c.target for c in split.tests])
    diff, lo, hi = paired_bootstrap(hits_at_k(a.top10, warm, 10), hits_at_k(reference.top10, warm, 10))
    return f"{diff:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def table_row(
    a: Answers, split: Split, n_items: int, vectors: VectorTable, reference: Answers | None = None
) -> dict[str, Any]:
    warm = np.array([c.target for c in split.tests])
    cold = np.array([c.target for c in split.cold_tests])
    return {
        "row": a.ranker.name,
        "Recall@10": recall_at_k(a.top10, warm, 10),
        "NDCG@10": ndcg_at_k(a.top10, warm, 10),
        "Recall@50": recall_at_k(a.top50, warm, 50),
        "coverage@10": catalog_coverage(a.top10, 10, n_items),
        "ILD@10": mean_ild(a.top10, 10, vectors),
        "cold Recall@10": recall_at_k(a.cold10, cold, 10),
        "fit_s": a.fit_s,
        f"R@10 - {REFERENCE} [95% CI]": versus(a, reference, split),
    }


def describe(log: InteractionLog, split: Split) -> str:
    repeats = np.mean([c.target in c.history for c in split.tests]) if split.tests else 0.0
    return (
        f"{log.summary()}; leave-last-out: {len(split.train):,} train events, {len(split.tests):,} warm tests, "
        f"{len(split.cold_tests):,} cold tests ({len(split.cold_items):,} cold items); "
        f"{repeats:.1%} of warm targets repeat a history item (unreachable: history is excluded)"
    )


def bar_chart(name: str, title: str, rows: list[dict[str, Any]]) -> Path:
    """Grouped bars, one bar per row: accuracy metrics on the left, coverage and ILD (a
    different scale) on the right."""
    panels = [[m for m in METRICS if m not in BEYOND], BEYOND]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(len(rows), 1)
    for ax, metrics in zip(axes, panels, strict=True):
        x = np.arange(len(metrics))
        for i, row in enumerate(rows):
            bars = ax.bar(x + i * width, [row[m] for m in metrics], width, label=row["row"])
            ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
        ax.set_xticks(x + width * (len(rows) - 1) / 2, metrics)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(rows), 4), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * math.ceil(len(rows) / 4), 1, 1))  # room for the legend
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate(data: str, quick: bool) -> list[dict[str, Any]]:
    log = LOADERS[data](quick)
    split = leave_last_out(log)
    summary = describe(log, split)
    console.print(summary)
    answers = [run_row(r, log, split) for r in rows_for(log, split, quick)]
    vectors, note = ild_table(answers, log)
    reference = next((a for a in answers if a.ranker.name == REFERENCE), None)
    rows = [table_row(a, split, len(log.items), vectors, reference) for a in answers]
    name = f"eval_{data}{'_quick' if quick else ''}"
    emit(name, f"{summary}. {note}", rows)
    console.print(f"[dim]wrote {bar_chart(name, f'{data} ({note})', rows)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="hm,movielens", help="comma-separated: hm, movielens")
    parser.add_argument("--quick", action="store_true", help="a few users, few epochs: a smoke run")
    # One thread is faster on a small shared machine: two threads per process fight the other
    # processes for the cores (a SASRec step measured 0.4 s with one, 0.7-2 s with two).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    for data in args.data.split(","):
        evaluate(data.strip(), args.quick)


if __name__ == "__main__":
    main()
