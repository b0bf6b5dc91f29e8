"""The OpenAI-compatible enricher against a real local HTTP server speaking the
chat-completions protocol, scripted per test; plus the answer schema, cache and fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from consumers.enrichment import (
    EnrichmentError,
    FallbackEnricher,
    OpenAICompatEnricher,
    RulesEnricher,
    make_enricher,
)
from consumers.enrichment.cache import EnrichmentCache
from consumers.enrichment.openai_compat import OpenAIConfig, retry_after_s
from consumers.enrichment.prompt import load_prompt
from schemas.enrichment import ReAnswer, re_response_format
from schemas.settings import Settings
from tests.factories import product

GOOD = {
    "category": "long_boxy_coat",
    "season": "Winter",
    "color": None,
    "fit.vibe": "Relaxed",
    "silhouette.shape": "H-line",
    "length.feeling": "Long",
    "fabric.feature": "Wool_Heavy",
    "structural.geometry": {"width_flow": "Expanding", "waist_contour": "Barrel", "sleeve_profile": None},
}
GOOD_FLAT = {
    "category": ["long_boxy_coat"],
    "season": ["Winter"],
    "fit.vibe": ["Relaxed"],
    "silhouette.shape": ["H-line"],
    "length.feeling": ["Long"],
    "fabric.feature": ["Wool_Heavy"],
    "structural.geometry.width_flow": ["Expanding"],
    "structural.geometry.waist_contour": ["Barrel"],
}
SECRET = "sk-test-very-secret-4242"

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chat(content: str) -> web.Response:
    return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


async def good(_: web.Request) -> web.Response:
    return chat(json.dumps(GOOD))


class FakeLLM:
    """A chat-completions server on 127.0.0.1:<free port>; replies follow ``script`` in order
    (the last one repeats); every request's JSON body and headers are recorded."""

    def __init__(self) -> None:
        self.script: list[Reply] = [good]
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            step = self.script[min(len(self.requests), len(self.script)) - 1]
            return await step(request)
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        # handler_cancellation: a client that timed out must not leave a sleeping handler behind.
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    server = FakeLLM()
    await server.start()
    yield server
    await server.stop()


def enricher(base_url: str, closing: list[Any], **overrides: Any) -> OpenAICompatEnricher:
    config = OpenAIConfig(**{"base_url": base_url, "model": "test-model", "timeout_s": 5.0, **overrides})
    found = OpenAICompatEnricher(config)
    closing.append(found)
    return found


def fallback(primary: OpenAICompatEnricher, cache_path: Path | None, closing: list[Any]) -> FallbackEnricher:
    found = FallbackEnricher(primary, RulesEnricher(), EnrichmentCache(cache_path) if cache_path else None)
    closing.append(found)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the answer schema -------------------------------------------------------------------


def test_answer_model_reads_dotted_keys_and_flattens() -> None:
    answer = ReAnswer.model_validate(GOOD)
    assert answer.fit_vibe == "Relaxed"
    assert answer.structural_geometry is not None and answer.structural_geometry.width_flow == "Expanding"
    assert answer.flat() == GOOD_FLAT
    # Same flattening as a product that came with this RE block (the wire format has no nulls).
    block = answer.model_dump(by_alias=True, exclude_none=True)
    assert block["structural.geometry"] == {"width_flow": "Expanding", "waist_contour": "Barrel"}
    assert product(1, re=block).attributes.re() == GOOD_FLAT
    assert ReAnswer(fit_vibe="  Slim-fit ").flat() == {"fit.vibe": ["Slim-fit"]}


def test_answer_model_rejects_what_the_schema_forbids() -> None:
    for bad in ({"fit.vibe": "x" * 201}, {"vibe": "Relaxed"}, {"fit.vibe": 3}, {"structural.geometry": {"x": "y"}}):
        with pytest.raises(ValueError):
            ReAnswer.model_validate(bad)


def test_response_format_is_strict_compatible() -> None:
    fmt = re_response_format()
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    objects = [schema, *schema["$defs"].values()]
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    assert "fit.vibe" in schema["properties"] and "structural.geometry" in schema["properties"]
    text = json.dumps(schema)
    assert '"default"' not in text and "maxLength" not in text


def test_prompt_template_is_versioned_and_shows_measurements() -> None:
    prompt = load_prompt("re_v1")
    assert prompt.fingerprint.startswith("re_v1@")
    p = product(1, **{"top.chest_size": "100.0", "top.hem_size": "110.0", "season": "winter"})
    system, user = prompt.messages(p)
    assert system["role"] == "system" and "fit.vibe" in system["content"]
    assert p.title in user["content"] and "top.chest_size: 100.0" in user["content"]
    assert "top.hem_size/chest_size: 1.1" in user["content"] and "season: winter" in user["content"]


def test_retry_after_parsing() -> None:
    assert retry_after_s("2", 1.0, 10.0) == 2.0
    assert retry_after_s("120", 1.0, 10.0) == 10.0
    assert retry_after_s(None, 0.5, 10.0) == 0.5
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 0.5, 10.0) == 0.0  # a past date: now


# --- the backend against a real local server ---------------------------------------------


async def test_good_answer_gives_re_attributes(llm: FakeLLM, closing: list[Any]) -> None:
    p = product(7, title="Grey wool long coat")
    found = await enricher(llm.base_url, closing).enrich(p)
    assert found.backend == "openai" and found.re == GOOD_FLAT and found.notes == []
    (sent,) = llm.requests
    assert sent["model"] == "test-model" and sent["temperature"] == 0
    assert sent["response_format"] == re_response_format()
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert "Grey wool long coat" in sent["messages"][1]["content"]
    assert "Authorization" not in llm.headers[0]  # no key configured -> no header


async def test_malformed_json_is_repaired_once(llm: FakeLLM, closing: list[Any]) -> None:
    async def broken(_: web.Request) -> web.Response:
        return chat('{"fit.vibe": "Relaxed", ')

    llm.script = [broken, good]
    found = await enricher(llm.base_url, closing).enrich(product(1))
    assert found.re == GOOD_FLAT and found.backend == "openai"
    assert len(llm.requests) == 2
    repair = llm.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"fit.vibe": "Relaxed", '}
    assert repair[-1]["role"] == "user" and "invalid" in repair[-1]["content"].lower()
    assert found.notes and "repaired" in found.notes[0]


async def test_schema_violation_is_repaired_once(llm: FakeLLM, closing: list[Any]) -> None:
    async def extra_key(_: web.Request) -> web.Response:
        return chat(json.dumps({"vibe": "Relaxed"}))

    llm.script = [extra_key, good]
    found = await enricher(llm.base_url, closing).enrich(product(1))
    assert found.re == GOOD_FLAT and len(llm.requests) == 2
    assert "vibe" in llm.requests[1]["messages"][-1]["content"]


async def test_always_malformed_falls_back_to_rules(llm: FakeLLM, closing: list[Any], tmp_path: Path) -> None:
    async def prose(_: web.Request) -> web.Response:
        return chat("Sure! Here is the JSON you asked for.")

    llm.script = [prose]
    p = product(3, title="Black wool coat")
    found = await fallback(enricher(llm.base_url, closing), tmp_path / "c.sqlite3", closing).enrich(p)
    rules = await RulesEnricher().enrich(p)
    assert found.backend == "rules" and found.re == rules.re
    assert len(llm.requests) == 2  # the first answer and one repair, no more
    (note,) = found.notes
    assert note.startswith("openai failed: invalid answer after repair retry") and note.endswith("; rules used")


async def test_429_retry_after_then_good(llm: FakeLLM, closing: list[Any]) -> None:
    async def busy(_: web.Request) -> web.Response:
        return web.json_response({"error": "rate limited"}, status=429, headers={"Retry-After": "0"})

    llm.script = [busy, good]
    found = await enricher(llm.base_url, closing).enrich(product(1))
    assert found.re == GOOD_FLAT and len(llm.requests) == 2


async def test_429_forever_gives_up_with_the_status(llm: FakeLLM, closing: list[Any]) -> None:
    async def busy(_: web.Request) -> web.Response:
        return web.Response(status=503, text="overloaded", headers={"Retry-After": "0"})

    llm.script = [busy]
    with pytest.raises(EnrichmentError, match="HTTP 503"):
        await enricher(llm.base_url, closing, max_retries=2).enrich(product(1))
    assert len(llm.requests) == 3


async def test_http_error_is_not_retried(llm: FakeLLM, closing: list[Any]) -> None:
    async def missing_model(_: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "model not found"}}, status=404)

    llm.script = [missing_model]
    with pytest.raises(EnrichmentError, match="HTTP 404.*model not found"):
        await enricher(llm.base_url, closing).enrich(product(1))
    assert len(llm.requests) == 1


async def test_slow_server_times_out_and_falls_back(llm: FakeLLM, closing: list[Any]) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return chat(json.dumps(GOOD))

    llm.script = [slow]
    started = time.monotonic()
    found = await fallback(enricher(llm.base_url, closing, timeout_s=0.3), None, closing).enrich(product(1))
    assert time.monotonic() - started < 10  # generous: the point is "not 30 s"
    assert found.backend == "rules" and "timeout after 0.3s" in found.notes[0]


async def test_connection_refused_falls_back(closing: list[Any]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    found = await fallback(enricher(url, closing), None, closing).enrich(product(1))
    assert found.backend == "rules"
    assert found.notes[0].startswith("openai failed: connection failed")


async def test_bounded_concurrency(llm: FakeLLM, closing: list[Any]) -> None:
    async def slowish(_: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return chat(json.dumps(GOOD))

    llm.script = [slowish]
    backend = enricher(llm.base_url, closing, concurrency=2, rps=1000)
    found = await asyncio.gather(*(backend.enrich(product(i)) for i in range(6)))
    assert all(f.re == GOOD_FLAT for f in found)
    assert len(llm.requests) == 6 and llm.max_in_flight == 2


# --- cache and fallback ------------------------------------------------------------------


async def test_cache_answers_replays_and_survives_reopening(llm: FakeLLM, closing: list[Any], tmp_path: Path) -> None:
    path = tmp_path / "enrich.sqlite3"
    first = fallback(enricher(llm.base_url, closing), path, closing)
    p = product(11, title="Navy wool coat")
    assert (await first.enrich(p)).backend == "openai"
    again = await first.enrich(p.model_copy(update={"event_id": "replayed"}))
    assert again.re == GOOD_FLAT and again.backend == "openai" and again.notes == ["cache"]
    assert len(llm.requests) == 1
    await first.aclose()

    # A new process (new cache object on the same file), with the LLM now down: still answered.
    reopened = fallback(enricher(f"http://127.0.0.1:{free_port()}/v1", closing), path, closing)
    found = await reopened.enrich(p)
    assert found.re == GOOD_FLAT and found.notes == ["cache"]
    # A different product, or another model, is not a hit.
    other = await reopened.enrich(product(12, title="Navy wool jacket", fine="jacket"))
    assert other.backend == "rules"
    other_model = fallback(enricher(llm.base_url, closing, model="other"), path, closing)
    assert (await other_model.enrich(p)).notes == []
    assert len(llm.requests) == 2


async def test_rules_fallbacks_are_not_cached(llm: FakeLLM, closing: list[Any], tmp_path: Path) -> None:
    async def down(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    llm.script = [down, good]
    path = tmp_path / "enrich.sqlite3"
    wrapped = fallback(enricher(llm.base_url, closing), path, closing)
    p = product(5)
    assert (await wrapped.enrich(p)).backend == "rules"
    later = await wrapped.enrich(p)  # the LLM is back: it is asked again
    assert later.backend == "openai" and later.re == GOOD_FLAT and later.notes == []
    assert len(llm.requests) == 2
    stored = EnrichmentCache(path)
    assert len(stored) == 1
    stored.close()


async def test_api_key_in_header_never_in_logs(
    llm: FakeLLM, closing: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def busy_then_bad(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "0"})

    async def echoes_key(request: web.Request) -> web.Response:  # a server that echoes the header back
        return web.Response(status=401, text=f"bad key {request.headers['Authorization']}")

    llm.script = [good, busy_then_bad, echoes_key]
    backend = enricher(llm.base_url, closing, api_key=SECRET)
    assert SECRET not in repr(backend.config)
    await backend.enrich(product(1))
    found = await fallback(backend, None, closing).enrich(product(2))
    assert llm.headers[0]["Authorization"] == f"Bearer {SECRET}"
    assert found.backend == "rules" and "HTTP 401" in found.notes[0]
    assert SECRET not in found.notes[0] and "***" in found.notes[0]
    assert caplog.records and SECRET not in caplog.text


# --- wiring ------------------------------------------------------------------------------


async def test_make_enricher_by_name(tmp_path: Path, closing: list[Any]) -> None:
    assert isinstance(make_enricher("rules"), RulesEnricher)
    with pytest.raises(ValueError, match="TAILOR_OPENAI_BASE_URL"):
        make_enricher("openai", Settings(data_dir=tmp_path, openai_base_url=None))
    with pytest.raises(ValueError, match="not available yet"):
        make_enricher("transformers", Settings(data_dir=tmp_path))
    settings = Settings(data_dir=tmp_path, openai_base_url="http://127.0.0.1:1/v1", openai_api_key=SECRET)
    built = make_enricher("openai", settings)
    closing.append(built)
    assert isinstance(built, FallbackEnricher) and isinstance(built.primary, OpenAICompatEnricher)
    assert built.primary.config.api_key == SECRET and settings.enrich_cache.exists()


async def test_broken_cache_costs_only_the_replay_saving(llm: FakeLLM, closing: list[Any], tmp_path: Path) -> None:
    wrapped = fallback(enricher(llm.base_url, closing), tmp_path / "enrich.sqlite3", closing)
    assert wrapped.cache is not None
    wrapped.cache.close()  # every read and write now raises sqlite3.ProgrammingError
    found = await wrapped.enrich(product(1))
    assert found.backend == "openai" and found.re == GOOD_FLAT
