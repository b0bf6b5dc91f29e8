"""Decoding raw Kafka messages: a good event becomes its pydantic model, a bad one a
``DeadLetter`` that keeps the original bytes and says why."""

from __future__ import annotations

import base64
import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.events import DeadLetter
from schemas.limits import MAX_MESSAGE_BYTES

M = TypeVar("M", bound=BaseModel)


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def decode(
    raw: bytes | None,
    model: type[M],
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> M | DeadLetter:
    def dead(error: str, detail: str) -> DeadLetter:
        return DeadLetter(
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key.decode("utf-8", "replace") if key else None,
            error=error,
            detail=detail,
            payload_b64=base64.b64encode(raw or b"").decode(),
        )

    if not raw:
        return dead("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return dead("too_large", f"{len(raw)} bytes > limit {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return dead("invalid_json", str(exc))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return dead("schema", f"{model.__name__}: {_short(exc)}")
