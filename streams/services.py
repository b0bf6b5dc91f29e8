"""What the agents use, built once before the worker starts: models, vector store,
enricher, pipelines. Loading happens outside the event loop (it blocks).

The model-dependent part is one ``Live`` object; a model swap builds a new one and
replaces the reference in a single assignment, so a request or batch that already took
the old one finishes with it (nothing is dropped, nothing sees half a swap)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from consumers.enrichment import Enricher, make_enricher
from consumers.row_cache import RowCache
from consumers.vector_store import VectorStore
from models import registry
from models.encoder import ItemEncoder
from models.vocab import ReVocab
from schemas.settings import Settings
from streams import metrics
from streams.products import ProductPipeline
from streams.sequences import Popularity
from streams.serving import Recommender

log = logging.getLogger("tailor.services")


@dataclass
class Live:
    """One model version in service."""

    manifest: registry.Manifest
    encoder: ItemEncoder
    store: VectorStore
    products: ProductPipeline
    recommender: Recommender

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass
class Services:
    settings: Settings
    enricher: Enricher
    popularity: Popularity
    live: Live

    # The agents' view: always the live version's parts.
    @property
    def products(self) -> ProductPipeline:
        return self.live.products

    @property
    def recommender(self) -> Recommender:
        return self.live.recommender

    @property
    def store(self) -> VectorStore:
        return self.live.store

    @property
    def encoder(self) -> ItemEncoder:
        return self.live.encoder


def runtime_vocab(settings: Settings, version: str, snapshot: Path, inherit: Path | None = None) -> ReVocab:
    """The worker's RE vocabulary: the model version's snapshot, then every term the
    worker has added since (the runtime log starts as a copy of the snapshot, or of the
    previous version's log when the item tower, and so the term ids, carried over)."""
    path = settings.vocab_file(version)
    if not path.exists():
        ReVocab(inherit if inherit and inherit.exists() else snapshot).copy_to(path)
    return ReVocab(path)


def active_collection(settings: Settings) -> str:
    """The collection the ``LATEST`` model serves from (for clients, demos, tests)."""
    manifest = registry.latest_manifest(settings.models_path)
    return settings.collection_for(manifest.space if manifest else registry.INITIAL_VERSION)


def open_store(settings: Settings, space: str) -> VectorStore:
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    cache = RowCache(settings.row_cache_ttl_s, settings.row_cache_rows, on_lookup=metrics.count_row_cache)
    return VectorStore(settings.milvus, settings.collection_for(space), token=token, cache=cache)


def make_live(
    settings: Settings,
    model: registry.Artifact,
    enricher: Enricher,
    popularity: Popularity,
    store: VectorStore | None = None,
    inherit_vocab: Path | None = None,
) -> Live:
    manifest = model.manifest
    vocab = runtime_vocab(settings, manifest.version, model.re_vocab_path, inherit_vocab)
    encoder = ItemEncoder(model.tower, model.std_vocab, vocab, manifest.version, model.trained_re_terms)
    if store is None:
        store = open_store(settings, manifest.space)
        store.ensure_collection()
    return Live(
        manifest=manifest,
        encoder=encoder,
        store=store,
        products=ProductPipeline(enricher, encoder, store),
        recommender=Recommender(
            store,
            encoder,
            popularity,
            settings.candidates,
            model.ranking,
            batch=settings.request_batch,
            batches_in_flight=settings.request_batches_in_flight,
        ),
    )


def build(settings: Settings) -> Services:
    from streams.model_swap import fill_from_parent  # the swap module builds on this one

    torch.set_num_threads(settings.compute_threads)
    threadpool_limits(settings.compute_threads)  # numpy's BLAS (matrix products per request)
    model = registry.load_or_init(settings.models_path)
    enricher = make_enricher(settings.enricher, settings)
    popularity = Popularity()
    live = make_live(settings, model, enricher, popularity)
    fill_from_parent(settings, live)
    if settings.milvus_alias:
        live.store.point_alias(settings.collection)
    log.info(
        "model %s loaded (item space %s, %s; RE vocab %d terms); milvus %s/%s",
        live.version,
        live.manifest.space,
        ", ".join(live.manifest.components),
        len(live.encoder.re_vocab),
        settings.milvus,
        live.store.collection,
    )
    return Services(settings=settings, enricher=enricher, popularity=popularity, live=live)
