"""What every LLM backend does with a model's text: find the JSON object, validate it as a
``ReAnswer``, and, when it is invalid, build the one repair turn that shows the model its error.

Shared by the OpenAI-compatible and the local transformers backends so both accept and reject
exactly the same answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from consumers.enrichment.base import Enrichment, EnrichmentError
from schemas.enrichment import ReAnswer

log = logging.getLogger("tailor.enrichment")
Messages = list[dict[str, str]]

MAX_ECHO_CHARS = 2_000  # of an invalid answer sent back in the repair turn
MAX_REASON_CHARS = 300


class InvalidAnswer(ValueError):
    """The model's content is not JSON or breaks the schema; repairable once."""


def _unfenced(text: str) -> str:
    # Local models without constrained decoding like to fence JSON in ```json ... ```.
    return text.strip("`").removeprefix("json").strip() if text.startswith("```") else text


def json_objects(text: str) -> list[str]:
    """Every top-level JSON object embedded in ``text``, in order (prose around it ignored)."""
    decoder = json.JSONDecoder()
    found: list[str] = []
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            found.append(text[start:end])
        start = text.find("{", end)
    return found


def _validate(text: str) -> ReAnswer:
    try:
        return ReAnswer.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidAnswer(problems[:MAX_REASON_CHARS]) from None


def parse_answer(content: str) -> ReAnswer:
    """The first embedded JSON object that validates; otherwise the first object's (or, without
    any object, the whole text's) validation problems, short enough for the repair turn."""
    text = _unfenced(content.strip())
    candidates = json_objects(text)
    first_error: InvalidAnswer | None = None
    for candidate in candidates:
        try:
            return _validate(candidate)
        except InvalidAnswer as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return _validate(text)  # no object at all: raises, naming what the text is instead


def repair_turn(answer: str, problem: str) -> list[dict[str, str]]:
    """The invalid answer and what was wrong with it, so the model can correct itself."""
    return [
        {"role": "assistant", "content": answer[:MAX_ECHO_CHARS]},
        {
            "role": "user",
            "content": f"That answer is invalid: {problem}. Reply again with only one JSON object that "
            "follows the schema: the listed keys only, each value a short string or null.",
        },
    ]


async def ask_with_repair(
    backend: str, product_id: int, messages: Messages, complete: Callable[[Messages], Awaitable[str]]
) -> Enrichment:
    """Ask once; an invalid answer gets one repair turn; still invalid -> EnrichmentError."""
    content = await complete(messages)
    try:
        return Enrichment(re=parse_answer(content).flat(), backend=backend)
    except InvalidAnswer as exc:
        first_problem = str(exc)
    log.info("product %s: invalid answer (%s); asking for a repair", product_id, first_problem)
    content = await complete(messages + repair_turn(content, first_problem))
    try:
        answer = parse_answer(content)
    except InvalidAnswer as exc:
        raise EnrichmentError(f"invalid answer after repair retry: {exc}") from None
    return Enrichment(re=answer.flat(), backend=backend, notes=[f"{backend} answer repaired: {first_problem}"])
