"""Worker entry point: build the services (models, Milvus) then run the faust worker."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from prometheus_client import REGISTRY, start_http_server

from schemas.settings import Settings
from streams.thread_cpu import ThreadCpuCollector


def _secret_forms(settings: Settings) -> list[str]:
    secrets = (
        settings.kafka_sasl_password,
        settings.kafka_ssl_key_password,
        settings.openai_api_key,
        settings.milvus_token,
    )
    forms: set[str] = set()
    for value in (s.get_secret_value() for s in secrets if s is not None):
        forms |= {value, repr(value.encode())[2:-1]}  # as text and as logged bytes
        if ":" in value:  # a Milvus "user:password" token: the password alone too
            forms.add(value.split(":", 1)[1])
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def redact_secrets(settings: Settings) -> None:
    """Mask the configured secrets in every log record, from any library and for every
    handler: aiokafka's DEBUG log of the SASL PLAIN handshake carries the password."""
    secrets = _secret_forms(settings)
    if not secrets:
        return
    make = logging.getLogRecordFactory()

    def mask(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            text = record.getMessage()
            if any(s in text for s in secrets):
                record.msg, record.args = mask(text), None
            if record.exc_info:
                record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is logging's to report
            pass
        return record

    logging.setLogRecordFactory(record_factory)


def freeze_startup_heap() -> int:
    """Move every object alive now (imported modules, the loaded models) out of the
    collector's reach; returns how many. A full (gen2) collection walks every tracked
    object: ~330k after importing torch, faust and pydantic, a 200-230 ms pause in which no
    request moves (measured on the request path at 50/s, 100k items). These objects live
    as long as the process, so the collector has nothing to find among them; frozen, the
    collections that remain walk the runtime's own objects (caches, tables): 40 ms at
    most in the same run. Objects freed later are still freed by reference counting."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run_worker(settings: Settings, metrics_port: int = 0) -> None:
    import faust

    from streams import agents
    from streams.app import app
    from streams.runtime import ensure_topics
    from streams.services import build

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    redact_secrets(settings)
    # Idempotent: the topics with their partition counts and the group's start offsets
    # (``init_group_offsets``), so a worker started on a fresh cluster without `tailor
    # topics` neither gets auto-created one-partition topics nor skips records after its
    # first rebalance. Also waits (30 s) for a broker that is still starting.
    asyncio.run(ensure_topics(settings))
    agents.services = build(settings)
    frozen = freeze_startup_heap()
    logging.getLogger("tailor.worker").info("%d startup objects frozen (out of the collector's walks)", frozen)
    if metrics_port:
        REGISTRY.register(ThreadCpuCollector())
        start_http_server(metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        agents.services.live.store.close()
