"""The ``tailor`` command: ``up`` (embedded runtime + worker), ``worker``, ``topics``, ``demo``,
``train item-tower``, ``retrain``."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from schemas.settings import load_settings

cli = typer.Typer(help="Tailor: event-driven streaming recommender.", no_args_is_help=True, add_completion=False)


@cli.command()
def up(metrics_port: Annotated[int, typer.Option(help="serve Prometheus metrics here (0 = off)")] = 0) -> None:
    """Start the embedded broker and Milvus (unless TAILOR_* point elsewhere), create the
    topics, and run the worker in the foreground. Ctrl-C stops everything; data stays."""
    from streams.runtime import EmbeddedRuntime
    from streams.worker import run_worker

    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with EmbeddedRuntime(settings):
        run_worker(settings, metrics_port)


@cli.command()
def worker(metrics_port: int = 0) -> None:
    """Run only the worker against the configured broker and Milvus."""
    from streams.worker import run_worker

    run_worker(load_settings(), metrics_port)


@cli.command()
def topics() -> None:
    """Create the topics with their partition counts on the configured broker."""
    from streams.runtime import ensure_topics

    asyncio.run(ensure_topics(load_settings()))


@cli.command()
def demo(
    catalog: Annotated[
        str, typer.Option(help="catalog JSON/CSV file, glob or folder; default: the bundled sample")
    ] = "sample",
    users: Annotated[int, typer.Option(help="demo users to make up for a --catalog")] = 4,
) -> None:
    """Start the runtime, publish a catalog and clicks, print each user's recommendations,
    then publish a brand-new product and time its first appearance in a similar user's list."""
    from streams.demo import run_demo

    raise typer.Exit(run_demo(load_settings(), catalog, users))


train = typer.Typer(help="Offline training jobs.", no_args_is_help=True)
cli.add_typer(train, name="train")


@train.command("item-tower")
def train_item_tower(
    data: Annotated[
        str,
        typer.Option(
            help="'sample' (bundled), 'kfashion' / 'hm' / 'movielens' (../shared/data), or a catalog JSON/CSV path/glob"
        ),
    ] = "sample",
    simcse_epochs: int = 30,
    triplet_epochs: int = 30,
    seed: int = 0,
    version: Annotated[str | None, typer.Option(help="version name (default item-<utc time>)")] = None,
) -> None:
    """Train the item tower (SimCSE, then hierarchical triplet) and publish it as the
    latest model version under TAILOR_MODEL_DIR, for workers to load."""
    from models.train_item import TrainConfig
    from streams.training import train_and_publish

    cfg = TrainConfig(simcse_epochs=simcse_epochs, triplet_epochs=triplet_epochs, seed=seed)
    train_and_publish(data, load_settings().models_path, cfg, version)


@cli.command()
def retrain(
    data: Annotated[str, typer.Option(help="'topics' (the logged Kafka topics), 'hm' or 'movielens'")] = "topics",
    item_tower: Annotated[bool, typer.Option(help="retrain the item tower too (new item space)")] = False,
    item_epochs: int = 30,
    user_epochs: int = 8,
    deepfm_epochs: int = 4,
    diversity_epochs: int = 6,
    sasrec_epochs: Annotated[int, typer.Option(min=0, help="SASRec epochs (0: no SASRec component)")] = 40,
    publish: Annotated[bool, typer.Option(help="announce the version on tailor.models.updated")] = True,
    version: Annotated[str | None, typer.Option(help="version name (default rank-<utc time>)")] = None,
) -> None:
    """Train user tower, DeepFM and the diversity reranker (and optionally the item tower)
    from the logged topics, evaluate, write a new model version and tell the workers."""
    from streams.retrain import RetrainOptions
    from streams.retrain import retrain as run

    opts = RetrainOptions(
        data=data,
        item_tower=item_tower,
        item_epochs=item_epochs,
        user_epochs=user_epochs,
        deepfm_epochs=deepfm_epochs,
        diversity_epochs=diversity_epochs,
        sasrec_epochs=sasrec_epochs,
        publish=publish,
        version=version,
    )
    run(load_settings(), opts)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
