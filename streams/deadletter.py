"""Decoding raw Kafka messages: a good event becomes its pydantic model, a bad one a
``DeadLetter`` that keeps the original bytes and says why."""

from __future__ import annotations

import base64
import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.events import DeadLetter
from schemas.limits import MAX_DEADLETTER_KEY_CHARS, MAX_DEADLETTER_PAYLOAD_BYTES, MAX_MESSAGE_BYTES

M = TypeVar("M", bound=BaseModel)


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def letter_key(key: bytes | None) -> str | None:
    """A message key as a dead letter shows it: text, bounded (keys have no size limit)."""
    return key.decode("utf-8", "replace")[:MAX_DEADLETTER_KEY_CHARS] if key else None


def letter_payload(raw: bytes | None) -> tuple[str, str]:
    """(base64 payload, note): the original bytes, cut only where the letter would not fit
    in one Kafka message (an unsendable letter would crash the agent that sends it)."""
    raw = raw or b""
    if len(raw) <= MAX_DEADLETTER_PAYLOAD_BYTES:
        return base64.b64encode(raw).decode(), ""
    kept = base64.b64encode(raw[:MAX_DEADLETTER_PAYLOAD_BYTES]).decode()
    return kept, f" (payload: the first {MAX_DEADLETTER_PAYLOAD_BYTES} of {len(raw)} bytes)"


def decode(
    raw: bytes | None,
    model: type[M],
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> M | DeadLetter:
    def dead(error: str, detail: str) -> DeadLetter:
        payload, note = letter_payload(raw)
        return DeadLetter(
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=letter_key(key),
            error=error,
            detail=detail + note,
            payload_b64=payload,
        )

    if not raw:
        return dead("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return dead("too_large", f"{len(raw)} bytes > limit {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(raw)
    except RecursionError:  # the parser recurses per nesting level: "[[[[..." blows the stack
        return dead("invalid_json", "nested too deeply")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, and int literals over 4300 digits
        return dead("invalid_json", str(exc)[:500])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return dead("schema", f"{model.__name__}: {_short(exc)}")
