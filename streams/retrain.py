"""``tailor retrain``: logged topics (or a shared data set) -> item tower (optional) ->
user tower -> DeepFM -> self-attention reranker -> evaluation on each user's last
interaction -> a new model version on disk -> ``tailor.models.updated``.

Without ``--item-tower`` the live item tower is kept: same vectors, same Milvus
collection, only the ranking stages change. With it, the new version opens a new item
space; each worker re-embeds the catalog into the new collection before it swaps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from rich.console import Console

from consumers.producer import TailorProducer
from models import registry
from models.encoder import ItemEncoder
from models.interactions import InteractionLog, leave_last_out
from models.metrics import ndcg_at_k, recall_at_k
from models.pipeline import OfflinePipeline, profile_rows, steps_by_user
from models.plots import loss_curves
from models.sasrec import SASRecConfig
from models.train_item import TrainConfig, train_item_tower
from models.train_ranking import RankingTrainConfig, build_catalog, category_queries, train_ranking
from models.train_user import UserTrainConfig
from models.vocab import ReVocab
from schemas import topics
from schemas.events import ModelsUpdated
from schemas.settings import Settings

console = Console()


class RetrainOptions(BaseModel):
    data: str = "topics"  # or hm / movielens (../shared/data)
    item_tower: bool = False
    item_epochs: int = 30
    user_epochs: int = 8
    deepfm_epochs: int = 4
    diversity_epochs: int = 6
    sasrec_epochs: int = Field(default=40, ge=0)  # 0: a version without the SASRec component
    publish: bool = True
    evaluate: bool = True  # leave-last-out against popularity, into the manifest's metrics
    version: str | None = None


def load_log(settings: Settings, data: str) -> InteractionLog:
    if data == "topics":
        from streams.topic_log import topic_log

        return asyncio.run(topic_log(settings))
    from streams import datasets

    loaders = {"hm": datasets.hm_log, "movielens": datasets.movielens_log}
    if data not in loaders:
        raise ValueError(f"unknown data {data!r}: topics, hm or movielens")
    return loaders[data]()


def _encoder(settings: Settings, log: InteractionLog, opts: RetrainOptions, version: str) -> tuple:
    """(encoder, tower, std vocab, RE vocab, item space, parent version)."""
    current = registry.load_or_init(settings.models_path)
    if opts.item_tower:
        cfg = TrainConfig(simcse_epochs=opts.item_epochs, triplet_epochs=opts.item_epochs)
        ckpt = settings.models_path / version / "checkpoints"
        trained = train_item_tower(log.items, cfg, log=console.print, checkpoint_dir=ckpt)
        enc = trained.encoder(version)
        return enc, trained.tower, trained.std_vocab, trained.re_vocab, version, current.manifest.version
    # Same item space: the live tower, and the RE term ids the workers use now (their
    # runtime log, which grew past the version's snapshot), so DeepFM's RE ids and the
    # vectors in Milvus agree; read into memory only: neither file may be appended to here.
    runtime = settings.vocab_file(current.manifest.version)
    source = runtime if runtime.exists() else current.re_vocab_path
    vocab = ReVocab(source)  # a missing file: the reserved ids only
    vocab.path = None
    enc = ItemEncoder(current.tower, current.std_vocab, vocab, version, current.trained_re_terms)
    return enc, current.tower, current.std_vocab, vocab, current.manifest.space, current.manifest.version


def retrain(settings: Settings, opts: RetrainOptions, log: InteractionLog | None = None) -> registry.Manifest:
    """``log`` given (a benchmark's own users), it is trained on instead of ``opts.data``."""
    version = opts.version or "rank-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log = log or load_log(settings, opts.data)
    console.print(log.summary())
    split = leave_last_out(log, cold_fraction=0.0)
    if not split.train:
        raise SystemExit("no interactions to train on")
    enc, tower, std_vocab, re_vocab, space, parent = _encoder(settings, log, opts, version)
    enc.encode_growing(log.items)  # RE terms of the catalog get rows (as the worker does)
    catalog = build_catalog(enc, log.items, {it.product_id: it.price or 0.0 for it in log.items})
    profiles = profile_rows(log)
    cfg = RankingTrainConfig(
        user=UserTrainConfig(epochs=opts.user_epochs),
        deepfm_epochs=opts.deepfm_epochs,
        diversity_epochs=opts.diversity_epochs,
        sasrec=SASRecConfig(epochs=opts.sasrec_epochs) if opts.sasrec_epochs > 0 else None,
    )
    fine_of = {it.product_id: it.fine for it in log.items}
    ranking, report = train_ranking(
        enc,
        catalog,
        steps_by_user(split.train),
        profiles,
        category_queries(enc, log.items),
        fine_of,
        cfg,
        console.print,
    )
    metrics = evaluate(OfflinePipeline.from_split(catalog, ranking, split, profiles), split) if opts.evaluate else {}
    metrics["train_seconds"] = report.seconds
    manifest = registry.Manifest(
        version=version,
        tower=tower.cfg,
        trained=True,
        metrics=metrics,
        item_space=space,
        parent=parent,
        notes=f"retrained on {opts.data}: {log.summary()}",
    )
    target = registry.save(settings.models_path, manifest, tower, std_vocab, re_vocab, ranking)
    _plots(target, report)
    manifest = registry.load(settings.models_path, version).manifest
    console.print(
        f"[green]model {version} written to {target}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
    )
    if opts.publish:
        asyncio.run(publish(settings, manifest, opts.item_tower))
    return manifest


def evaluate(pipeline: OfflinePipeline, split) -> dict[str, float]:
    """Leave-last-out on the training log: the new pipeline vs popularity, same cases."""
    cases = split.tests
    if not cases:
        return {}
    targets = np.array([c.target for c in cases])
    ranked = pipeline.rank(cases, 10, "diversity")
    popular = np.array([p for p, _ in pipeline.popularity.most_common(60)])
    pop = np.array([[p for p in popular if p not in set(c.history)][:10] for c in cases])
    return {
        "recall@10": recall_at_k(ranked, targets, 10),
        "ndcg@10": ndcg_at_k(ranked, targets, 10),
        "popularity_recall@10": recall_at_k(pop, targets, 10),
        "test_cases": float(len(cases)),
    }


def _plots(target: Path, report) -> None:
    loss_curves(
        {
            "user tower (InfoNCE)": report.user_tower.loss,
            f"DeepFM ({'listwise CE' if report.deepfm_objective == 'listwise' else 'BCE'})": report.deepfm_loss,
            "self-attention reranker (listwise CE)": report.diversity.loss,
            **({"SASRec (next-item CE)": report.sasrec_loss} if report.sasrec_loss else {}),
        },
        target / "ranking_loss.png",
    )


async def publish(settings: Settings, manifest: registry.Manifest, item_tower_changed: bool) -> None:
    event = ModelsUpdated(
        model_version=manifest.version,
        item_space=manifest.space,
        item_tower_changed=item_tower_changed,
        components=manifest.components,
        metrics=manifest.metrics,
    )
    async with TailorProducer(settings) as producer:
        await producer.send_raw(topics.MODELS_UPDATED.name, manifest.version, event.model_dump_json().encode())
    console.print(f"published {topics.MODELS_UPDATED.name}: {manifest.version}")
