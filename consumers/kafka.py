"""Connection settings shared by every aiokafka client (security passes through from config)."""

from __future__ import annotations

from typing import Any

from consumers.idle_fetch import pause_idle_fetches
from schemas.settings import Settings


def client_kwargs(settings: Settings) -> dict[str, Any]:
    # Every aiokafka client of the process (faust's included) is built from here, so the
    # process-wide fetch setting is applied here too.
    pause_idle_fetches(settings.kafka_idle_fetch_backoff_ms)
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        kwargs["ssl_context"] = create_ssl_context()
    # SASL settings count under SASL_* only (aiokafka ignores them otherwise); with no
    # mechanism given, aiokafka's default PLAIN, which still needs the username/password.
    if settings.kafka_security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs
