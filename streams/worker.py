"""Worker entry point: build the services (models, Milvus) then run the faust worker."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from schemas.settings import Settings


def run_worker(settings: Settings, metrics_port: int = 0) -> None:
    import faust

    from streams import agents
    from streams.app import app
    from streams.services import build

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    agents.services = build(settings)
    if metrics_port:
        start_http_server(metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        agents.services.live.store.close()
