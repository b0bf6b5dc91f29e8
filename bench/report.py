"""Shared output of the benchmarks: a rich table on stdout plus a CSV under bench/results/."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
console = Console(width=160)
# Columns of text (left-aligned); the rest are numbers.
TEXT_COLUMNS = ("backend", "model", "row", "data", "set", "search", "path", "stage", "consumer", "enricher")


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def emit(name: str, title: str, rows: list[dict[str, Any]]) -> Path:
    """Print ``rows`` as one table and write them to ``bench/results/<name>.csv``."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(c, "")) for c in columns))
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    console.print(f"[dim]wrote {path}")
    return path
