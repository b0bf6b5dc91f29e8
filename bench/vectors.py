"""Real item vectors for the benchmarks: catalogs -> rules enrichment -> the current item
tower (TAILOR_MODEL_DIR's LATEST, or the untrained seed-0 tower)."""

from __future__ import annotations

import glob

import numpy as np

from models import registry
from models.encoder import ItemEncoder
from models.vocab import ReVocab
from schemas.events import ProductEnriched
from schemas.settings import Settings
from streams.datasets import SHARED_DATA, catalog_items

KFASHION = str(SHARED_DATA / "kfashion-seed" / "*.json")


def catalogs() -> list[str]:
    """The bundled sample, plus the kfashion seed where ../shared/data is present."""
    return ["sample", *([KFASHION] if glob.glob(KFASHION) else [])]


def item_vectors(settings: Settings) -> tuple[list[ProductEnriched], np.ndarray, str]:
    items = [it for path in catalogs() for it in catalog_items(path)]
    model = registry.load_or_init(settings.models_path)
    vocab = ReVocab(model.re_vocab_path)
    vocab.path = None  # grow in memory only: the model's snapshot stays as it was shipped
    encoder = ItemEncoder(model.tower, model.std_vocab, vocab, model.manifest.version)
    return items, encoder.encode_growing(items), model.manifest.version


def without_category(it: ProductEnriched) -> ProductEnriched:
    """The category tokens hidden: the neighbours must come from the other attributes."""
    std = {k: v for k, v in it.std.items() if k != "category"}
    return it.model_copy(update={"std": std, "coarse": "?", "fine": "?"})


def variants(base: np.ndarray, n: int, sigma: float, seed: int = 0) -> np.ndarray:
    """``n`` vectors: the real ones, then perturbed copies of them (catalog variants),
    L2-normalised; keeps the clustered shape real catalogs have, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n) % len(base)
    out = base[idx] + np.where(np.arange(n)[:, None] < len(base), 0.0, rng.normal(0, sigma, (n, base.shape[1])))
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
