"""Connection settings shared by every aiokafka client (security passes through from config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consumers.idle_fetch import pause_idle_fetches
from schemas.settings import Settings


def client_kwargs(settings: Settings) -> dict[str, Any]:
    # Every aiokafka client of the process (faust's included) is built from here, so the
    # process-wide fetch setting is applied here too.
    pause_idle_fetches(settings.kafka_idle_fetch_backoff_ms, settings.kafka_idle_fetch_max_backoff_ms)
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        password = settings.kafka_ssl_key_password
        kwargs["ssl_context"] = create_ssl_context(
            cafile=_path(settings.kafka_ssl_cafile),
            certfile=_path(settings.kafka_ssl_certfile),
            keyfile=_path(settings.kafka_ssl_keyfile),
            password=password.get_secret_value() if password else None,
        )
    # SASL settings count under SASL_* only (aiokafka ignores them otherwise); with no
    # mechanism given, aiokafka's default PLAIN, which still needs the username/password.
    if settings.kafka_security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def producer_kwargs(settings: Settings) -> dict[str, Any]:
    """``client_kwargs`` plus what only a producer takes (every producer of ours)."""
    return {**client_kwargs(settings), "compression_type": compression_type(settings)}


def compression_type(settings: Settings) -> str | None:
    return None if settings.kafka_compression == "none" else settings.kafka_compression


def _path(path: Path | None) -> str | None:
    return str(path) if path is not None else None
