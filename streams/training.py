"""``tailor train item-tower``: catalog -> enrichment (as the worker does it) -> the two
training stages -> a new versioned artifact (+ loss curve and embedding map PNGs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from models import registry
from models.metrics import purity_at_k
from models.plots import embedding_map, loss_curves
from models.train_item import TrainConfig, train_item_tower
from streams.datasets import load_items

console = Console()


def train_and_publish(data: str, model_dir: Path, cfg: TrainConfig, version: str | None = None) -> Path:
    items = load_items(data)
    console.print(f"training the item tower on {len(items)} items from {data}")
    version = version or "item-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    trained = train_item_tower(items, cfg, log=console.print, checkpoint_dir=model_dir / version / "checkpoints")
    tower, history = trained.tower, trained.history
    vectors = trained.encoder().encode(items)
    fine = [f"{it.coarse}/{it.fine}" for it in items]
    metrics = {
        "fine_purity@10": purity_at_k(vectors, fine),
        "coarse_purity@10": purity_at_k(vectors, [it.coarse for it in items]),
        "train_seconds": history.seconds,
        "items": float(len(items)),
    }
    manifest = registry.Manifest(
        version=version,
        tower=tower.cfg,
        trained=True,
        metrics=metrics,
        notes=f"SimCSE {cfg.simcse_epochs} + triplet {cfg.triplet_epochs} epochs on {data}",
    )
    target = registry.save(model_dir, manifest, tower, trained.std_vocab, trained.re_vocab)
    loss_curves(
        {"stage 1: SimCSE (NT-Xent)": history.simcse, "stage 2: hierarchical triplet": history.triplet},
        target / "loss_curve.png",
    )
    embedding_map(vectors, fine, target / "embedding_map.png", title=f"{version}: items by category (PCA)")
    console.print(
        f"[green]model {version} written to {target}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
    )
    return target
