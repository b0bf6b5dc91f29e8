"""Catalog files -> ProductCreated events. Reads our sample shape
(``{product_id, title, description, price, attributes: {clothes, reinforced_feature_value}}``),
the seed's shape (``{product_id, feature_data: {clothes, reinforced_feature_value}}``, e.g.
``../shared/data/kfashion-seed/*.json``) and CSV with ``product_id,title,description,price``
plus ``clothes.<key>`` / ``re.<key>`` columns."""

from __future__ import annotations

import csv
import glob
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from schemas.attributes import flatten, split_category
from schemas.events import ProductCreated

SAMPLE = "sample"


def _title_from_std(clothes: dict[str, Any]) -> str:
    """The seed data has no titles: make a plain one from colour, material and category."""
    std = flatten(clothes, split_commas=True)
    _, fine = split_category(std.get("category", ["item"])[0])
    colour = (std.get("color") or [""])[0]
    fibre = (std.get("fiber_composition") or [""])[0].replace(" Others", "")
    return " ".join(w for w in (colour, fibre, fine) if w).strip() or fine


def from_record(rec: dict[str, Any]) -> ProductCreated:
    if "feature_data" in rec:  # the seed's JSON shape
        feats = rec["feature_data"]
        attrs = {"clothes": feats["clothes"], "reinforced_feature_value": feats.get("reinforced_feature_value")}
        return ProductCreated(
            product_id=int(rec["product_id"]),
            title=rec.get("title") or _title_from_std(feats["clothes"]),
            description=rec.get("description", ""),
            attributes=attrs,
            price=rec.get("price"),
        )
    return ProductCreated.model_validate(rec)


def _from_csv_row(row: dict[str, str]) -> ProductCreated:
    clothes = {k.removeprefix("clothes."): v for k, v in row.items() if k.startswith("clothes.") and v}
    re = {k.removeprefix("re."): v for k, v in row.items() if k.startswith("re.") and v}
    return ProductCreated(
        product_id=int(row["product_id"]),
        title=row.get("title") or _title_from_std(clothes),
        description=row.get("description", ""),
        price=float(row["price"]) if row.get("price") else None,
        attributes={"clothes": clothes, "reinforced_feature_value": re or None},
    )


def _files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted([*p.glob("*.json"), *p.glob("*.csv")])
    found = sorted(Path(f) for f in glob.glob(path))
    if not found:
        raise FileNotFoundError(f"no catalog file matches {path}")
    return found


def load_catalog(path: str = SAMPLE) -> Iterator[ProductCreated]:
    if path == SAMPLE:
        text = resources.files("streams").joinpath("sample/catalog.json").read_text(encoding="utf-8")
        yield from (from_record(r) for r in json.loads(text))
        return
    for file in _files(path):
        if file.suffix == ".csv":
            with file.open(newline="", encoding="utf-8") as fh:
                yield from (_from_csv_row(r) for r in csv.DictReader(fh))
        else:
            data = json.loads(file.read_text(encoding="utf-8"))
            yield from (from_record(r) for r in (data if isinstance(data, list) else [data]))


def sample_file(name: str) -> Any:
    return json.loads(resources.files("streams").joinpath(f"sample/{name}").read_text(encoding="utf-8"))
