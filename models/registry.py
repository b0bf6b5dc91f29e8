"""Versioned model artifacts on disk: ``<model_dir>/<version>/`` holds the weights
(safetensors), a JSON manifest and the RE vocabulary snapshot; ``LATEST`` names the
version workers load."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from models import diversity
from models.cooccurrence import CoOccurrence
from models.item_tower import ItemTower, TowerConfig
from models.ranking import RankingModels
from models.reranker import DeepFMReranker
from models.sasrec import SASRec
from models.tokenizer import title_vocab_size
from models.user_tower import UserTower, UserTowerConfig
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
    # The version whose item tower made the vectors: versions sharing it share one Milvus
    # collection; a new item space means a re-embedded catalog in a new collection.
    item_space: str = ""
    parent: str = ""  # the version this one was retrained from (its catalog is re-embedded)
    components: list[str] = Field(default_factory=lambda: ["item_tower"])

    @property
    def space(self) -> str:
        return self.item_space or self.version


@dataclass
class Artifact:
    """One loaded model version: what the worker needs to embed products."""

    manifest: Manifest
    tower: ItemTower
    std_vocab: StdVocab
    re_vocab_path: Path  # the RE vocabulary snapshot the tower's table was trained with
    ranking: RankingModels = field(default_factory=RankingModels)

    @property
    def trained_re_terms(self) -> int:
        """How many RE ids the tower's table was trained with (the snapshot's length; only
        the reserved ids without one): rows past it were added at run time."""
        return len(ReVocab(self.re_vocab_path))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_weights(module: torch.nn.Module, path: Path) -> None:
    """A module's weights as safetensors, written atomically (tmp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def _save_ranking(target: Path, ranking: RankingModels) -> list[str]:
    saved = []
    if ranking.user_tower is not None:
        save_weights(ranking.user_tower, target / "user_tower.safetensors")
        _write_atomic(target / "user_tower.json", ranking.user_tower.cfg.model_dump_json(indent=1))
        saved.append("user_tower")
    if ranking.deepfm is not None:
        ranking.deepfm.save(target)
        saved.append("deepfm")
    if ranking.diversity is not None:
        diversity.save(ranking.diversity, target)
        saved.append("diversity")
    if ranking.cooccurrence is not None:
        ranking.cooccurrence.save(target)
        saved.append("cooccurrence")
    if ranking.sasrec is not None:
        ranking.sasrec.save(target)
        saved.append("sasrec")
    return saved


def _load_ranking(target: Path, components: list[str]) -> RankingModels:
    ranking = RankingModels()
    if "user_tower" in components:
        cfg = UserTowerConfig.model_validate_json((target / "user_tower.json").read_text(encoding="utf-8"))
        ranking.user_tower = UserTower(cfg)
        ranking.user_tower.load_state_dict(load_file(str(target / "user_tower.safetensors")))
        ranking.user_tower.eval()
    if "deepfm" in components:
        ranking.deepfm = DeepFMReranker.load(target)
    if "diversity" in components:
        ranking.diversity = diversity.load(target)
    if "cooccurrence" in components:
        ranking.cooccurrence = CoOccurrence.load(target)
    if "sasrec" in components:
        ranking.sasrec = SASRec.load(target)
    return ranking


def save(
    model_dir: Path,
    manifest: Manifest,
    tower: ItemTower,
    std_vocab: StdVocab,
    re_vocab: ReVocab,
    ranking: RankingModels | None = None,
) -> Path:
    """Write a complete version, then point ``LATEST`` at it (readers never see half a version)."""
    target = model_dir / manifest.version
    target.mkdir(parents=True, exist_ok=True)
    components = ["item_tower", *_save_ranking(target, ranking or RankingModels())]
    manifest = manifest.model_copy(update={"tower": tower.cfg, "components": components})
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
    ranking = _load_ranking(target, manifest.components)
    return Artifact(manifest, tower.eval(), std_vocab, target / "re_vocab.jsonl", ranking)


def load_latest(model_dir: Path) -> Artifact | None:
    version = latest_version(model_dir)
    return load(model_dir, version) if version else None


def initial_tower(seed: int = 0) -> ItemTower:
    """An untrained tower with a fixed seed: deterministic vectors until a trained version lands."""
    torch.manual_seed(seed)
    cfg = TowerConfig(std_size=len(StdVocab.default()), re_size=1024, title_size=title_vocab_size())
    return ItemTower(cfg).eval()


def latest_manifest(model_dir: Path) -> Manifest | None:
    version = latest_version(model_dir)
    if version is None:
        return None
    return Manifest.model_validate_json((model_dir / version / "manifest.json").read_text(encoding="utf-8"))


def is_trained(model_dir: Path) -> bool:
    manifest = latest_manifest(model_dir)
    return manifest is not None and manifest.trained


def load_or_init(model_dir: Path) -> Artifact:
    version = latest_version(model_dir)
    if version is None:
        tower = initial_tower()
        manifest = Manifest(version=INITIAL_VERSION, tower=tower.cfg, notes="untrained, seed 0")
        save(model_dir, manifest, tower, StdVocab.default(), ReVocab())
        version = INITIAL_VERSION
    return load(model_dir, version)
