"""Versioned model artifacts on disk: ``<model_dir>/<version>/`` holds the weights
(safetensors), a JSON manifest and the RE vocabulary snapshot; ``LATEST`` names the
version workers load."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from models.item_tower import ItemTower, TowerConfig
from models.tokenizer import title_vocab_size
from models.vocab import ReVocab, StdVocab

MANIFEST_FORMAT = "tailor.model"
INITIAL_VERSION = "v0-init"


class Manifest(BaseModel):
    format: str = MANIFEST_FORMAT
    format_version: int = 1
    version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tower: TowerConfig
    trained: bool = False
    notes: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)


@dataclass
class Artifact:
    """One loaded model version: what the worker needs to embed products."""

    manifest: Manifest
    tower: ItemTower
    std_vocab: StdVocab
    re_vocab_path: Path  # the RE vocabulary snapshot the tower's table was trained with


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_weights(tower: ItemTower, path: Path) -> None:
    """The tower's weights as safetensors, written atomically (tmp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def save(model_dir: Path, manifest: Manifest, tower: ItemTower, std_vocab: StdVocab, re_vocab: ReVocab) -> Path:
    target = model_dir / manifest.version
    target.mkdir(parents=True, exist_ok=True)
    manifest = manifest.model_copy(update={"tower": tower.cfg})
    save_weights(tower, target / "item_tower.safetensors")
    std_vocab.save(target / "std_vocab.json")
    re_vocab.copy_to(target / "re_vocab.jsonl")
    _write_atomic(target / "manifest.json", manifest.model_dump_json(indent=2))
    _write_atomic(model_dir / "LATEST", manifest.version)  # last: readers see a complete version
    return target


def latest_version(model_dir: Path) -> str | None:
    marker = model_dir / "LATEST"
    return marker.read_text(encoding="utf-8").strip() if marker.exists() else None


def load(model_dir: Path, version: str) -> Artifact:
    target = model_dir / version
    manifest = Manifest.model_validate_json((target / "manifest.json").read_text(encoding="utf-8"))
    tower = ItemTower(manifest.tower)
    tower.load_state_dict(load_file(str(target / "item_tower.safetensors")))
    std_file = target / "std_vocab.json"
    std_vocab = StdVocab.load(std_file) if std_file.exists() else StdVocab.default()
    return Artifact(manifest, tower.eval(), std_vocab, target / "re_vocab.jsonl")


def initial_tower(seed: int = 0) -> ItemTower:
    """An untrained tower with a fixed seed: deterministic vectors until a trained version lands."""
    torch.manual_seed(seed)
    cfg = TowerConfig(std_size=len(StdVocab.default()), re_size=1024, title_size=title_vocab_size())
    return ItemTower(cfg).eval()


def is_trained(model_dir: Path) -> bool:
    version = latest_version(model_dir)
    if version is None:
        return False
    manifest = Manifest.model_validate_json((model_dir / version / "manifest.json").read_text(encoding="utf-8"))
    return manifest.trained


def load_or_init(model_dir: Path) -> Artifact:
    version = latest_version(model_dir)
    if version is None:
        tower = initial_tower()
        manifest = Manifest(version=INITIAL_VERSION, tower=tower.cfg, notes="untrained, seed 0")
        save(model_dir, manifest, tower, StdVocab.default(), ReVocab())
        version = INITIAL_VERSION
    return load(model_dir, version)
