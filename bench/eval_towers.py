"""The model rows of bench/eval: the two-tower pipeline cut at each stage.

One ``TowerSystem`` is fitted per data set (every row's fit_s is that one fit's time):
  item tower (SimCSE + hierarchical triplet) on the content of the WARM items only, so
  the cold items are embedded zero-shot, as a product created after training would be;
  then user tower, DeepFM and the self-attention reranker on the split's training events
  (``models.train_ranking``). Rows: two-tower only, + DeepFM, + diversity (MMR over the
  DeepFM scores, the simple baseline) and + diversity (self-attention reranker), all on
  exact top-100 retrieval over every catalog item, cold ones included.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from models.encoder import ItemEncoder, ItemInput
from models.interactions import InteractionLog, Split, TestCase
from models.item_tower import ItemTower, TowerConfig
from models.pipeline import OfflinePipeline, Stage, profile_rows, steps_by_user
from models.registry import save_weights
from models.sasrec import SASRecConfig
from models.train_item import TrainConfig, train_item_tower
from models.train_ranking import RankingTrainConfig, build_catalog, category_queries, train_ranking
from models.train_user import UserTrainConfig
from models.vocab import ReVocab, StdVocab

# The per-request lambdas of the diversity rows (1.0 = relevance only): the self-attention
# reranker at several, to trace the accuracy/diversity trade-off (0.8 is the serving default,
# ``RecommendRequest.diversity_lambda``); MMR at the middle one.
LAMBDAS = tuple(float(x) for x in os.environ.get("TAILOR_EVAL_LAMBDAS", "0.9,0.8,0.7,0.5,0.3").split(","))


# Item tower epochs per stage. `tailor train` uses 30 + 30; on 2 shared cores that is over an
# hour for MovieLens' 9.7k items, so the evaluation trains 8 + 8 unless told otherwise.
ITEM_EPOCHS = int(os.environ.get("TAILOR_EVAL_ITEM_EPOCHS", "8"))
# A folder to keep trained item towers in between runs (unset: no cache). The tower only
# depends on the warm items' content and the epochs (both in the folder name), so
# iterating on the later stages need not retrain it. Never commit it.
ITEM_CACHE = os.environ.get("TAILOR_EVAL_ITEM_CACHE", "")


def content_key(items: list[ItemInput]) -> str:
    """A short hash of what the item tower learns from (title, STD, RE, category of every
    item), so a cached tower is reused only for the same content: a change of the data
    mapping (e.g. a new STD attribute) must not silently get a tower trained without it."""
    digest = hashlib.sha256()
    for it in items:
        digest.update(json.dumps([it.title, it.std, it.re, it.coarse, it.fine], sort_keys=True).encode())
    return digest.hexdigest()[:12]


def _cached_encoder(name: str, warm: list[ItemInput], epochs: int) -> ItemEncoder:
    """The item tower trained on ``warm``, from ``ITEM_CACHE`` when it holds one."""
    folder = Path(ITEM_CACHE) / f"{name}-{len(warm)}-{epochs}-{content_key(warm)}" if ITEM_CACHE else None
    if folder is not None and (folder / "tower.safetensors").exists():
        tower = ItemTower(TowerConfig.model_validate_json((folder / "tower.json").read_text(encoding="utf-8")))
        tower.load_state_dict(load_file(str(folder / "tower.safetensors")))
        re_vocab = ReVocab(folder / "re_vocab.jsonl")
        re_vocab.path = None  # the cached snapshot is read only: new terms stay in memory
        return ItemEncoder(tower, StdVocab.load(folder / "std_vocab.json"), re_vocab, "eval")
    trained = train_item_tower(warm, TrainConfig(simcse_epochs=epochs, triplet_epochs=epochs), log=print)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(trained.tower, folder / "tower.safetensors")
        (folder / "tower.json").write_text(trained.tower.cfg.model_dump_json(), encoding="utf-8")
        trained.std_vocab.save(folder / "std_vocab.json")
        trained.re_vocab.copy_to(folder / "re_vocab.jsonl")
    return trained.encoder()


class TowerSystem:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.pipeline: OfflinePipeline | None = None
        self.item_vectors: dict[int, np.ndarray] = {}
        self.fit_seconds = 0.0  # wall time of the one fit every row shares

    def fit(self, log: InteractionLog, split: Split) -> None:
        if self.pipeline is not None:
            return
        started = time.perf_counter()
        epochs = 3 if self.quick else ITEM_EPOCHS
        warm = [it for it in log.items if it.product_id not in split.cold_items]
        encoder = _cached_encoder(log.name, warm, epochs)
        encoder.encode_growing(log.items)  # cold items' new RE terms get rows, as at run time
        catalog = build_catalog(encoder, log.items, {it.product_id: it.price or 0.0 for it in log.items})
        profiles = profile_rows(log)
        cfg = RankingTrainConfig(
            user=UserTrainConfig(epochs=2 if self.quick else 6),
            deepfm_epochs=1 if self.quick else 4,
            diversity_epochs=1 if self.quick else 6,
            sasrec=SASRecConfig(epochs=3) if self.quick else SASRecConfig(),
        )
        fine_of = {it.product_id: it.fine for it in log.items}
        queries = category_queries(encoder, log.items)
        models, report = train_ranking(
            encoder, catalog, steps_by_user(split.train), profiles, queries, fine_of, cfg, print
        )
        print(f"ranking stages trained in {report.seconds:.0f} s ({report.impressions} impressions)")
        self.pipeline = OfflinePipeline.from_split(catalog, models, split, profiles)
        self.item_vectors = catalog.vector_map()
        self.fit_seconds = time.perf_counter() - started


class TowerRow:
    def __init__(self, system: TowerSystem, name: str, stage: Stage, lam: float = 1.0) -> None:
        self.system = system
        self.name = name
        self.stage = stage
        self.lam = lam

    @property
    def item_vectors(self) -> dict[int, np.ndarray]:
        return self.system.item_vectors

    @property
    def fit_seconds(self) -> float:  # the shared system's fit (bench.eval reports it per row)
        return self.system.fit_seconds

    def fit(self, log: InteractionLog, split: Split) -> None:
        self.system.fit(log, split)

    def rank(self, cases: list[TestCase], k: int) -> np.ndarray:
        assert self.system.pipeline is not None
        if not cases:
            return np.zeros((0, k), dtype=np.int64)
        return self.system.pipeline.rank(cases, k, self.stage, self.lam)


def tower_rankers(log: InteractionLog, split: Split, quick: bool = False) -> list[TowerRow]:
    system = TowerSystem(quick)
    mid = LAMBDAS[len(LAMBDAS) // 2]
    return [
        TowerRow(system, "two-tower", "two_tower"),
        TowerRow(system, "+ DeepFM", "deepfm"),
        TowerRow(system, f"+ diversity MMR λ={mid}", "mmr", mid),
        *(TowerRow(system, f"+ diversity self-attention λ={lam}", "diversity", lam) for lam in LAMBDAS),
    ]
