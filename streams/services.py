"""What the agents use, built once before the worker starts: models, vector store,
enricher, pipelines. Loading happens outside the event loop (it blocks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from consumers.enrichment import make_enricher
from consumers.vector_store import VectorStore
from models import registry
from models.encoder import ItemEncoder
from models.vocab import ReVocab
from schemas.settings import Settings
from streams.products import ProductPipeline
from streams.sequences import Popularity
from streams.serving import Recommender

log = logging.getLogger("tailor.services")


@dataclass
class Services:
    settings: Settings
    store: VectorStore
    encoder: ItemEncoder
    products: ProductPipeline
    recommender: Recommender
    popularity: Popularity


def _runtime_vocab(settings: Settings, version: str, snapshot: Path) -> ReVocab:
    """The worker's RE vocabulary: the model version's snapshot, then every term the
    worker has added since (the runtime log starts as a copy of the snapshot)."""
    path = settings.vocab_file(version)
    if not path.exists():
        ReVocab(snapshot).copy_to(path)
    return ReVocab(path)


def build(settings: Settings) -> Services:
    model = registry.load_or_init(settings.models_path)
    manifest, vocab_snapshot = model.manifest, model.re_vocab_path
    runtime_vocab = _runtime_vocab(settings, manifest.version, vocab_snapshot)
    trained_terms = len(ReVocab(vocab_snapshot)) if vocab_snapshot.exists() else 2
    encoder = ItemEncoder(model.tower, model.std_vocab, runtime_vocab, manifest.version, trained_terms)
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    store = VectorStore(settings.milvus, settings.collection, token=token)
    store.ensure_collection()
    popularity = Popularity()
    log.info(
        "model %s loaded (RE vocab %d terms); milvus %s/%s",
        manifest.version,
        len(encoder.re_vocab),
        settings.milvus,
        settings.collection,
    )
    return Services(
        settings=settings,
        store=store,
        encoder=encoder,
        products=ProductPipeline(make_enricher(settings.enricher, settings), encoder, store),
        recommender=Recommender(store, encoder, popularity, settings.candidates),
        popularity=popularity,
    )
