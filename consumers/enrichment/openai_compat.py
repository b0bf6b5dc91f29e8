"""Enrichment by any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp
server, hosted APIs): JSON-schema-constrained answer, validated by pydantic, one repair retry.

Every failure ends as ``EnrichmentError(reason)`` so the caller can fall back at once; the
API key only ever goes into the Authorization header (never into logs or reasons).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from consumers.enrichment.answer import MAX_REASON_CHARS, ask_with_repair
from consumers.enrichment.base import Enrichment, EnrichmentError
from consumers.enrichment.prompt import PromptTemplate, load_prompt
from schemas.enrichment import re_response_format
from schemas.events import ProductCreated
from schemas.settings import Settings

log = logging.getLogger("tailor.enrichment.openai")

# Statuses that mean "busy / briefly down, ask again": waited out, then retried.
RETRYABLE = {429, 502, 503, 504}


def retry_after_s(value: str | None, fallback_s: float, cap_s: float) -> float:
    """``Retry-After`` as seconds or an HTTP date; a missing or odd value -> ``fallback_s``."""
    if value:
        try:
            return min(max(float(value), 0.0), cap_s)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
            return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), cap_s)
        except (TypeError, ValueError):
            pass
    return min(fallback_s, cap_s)


class RateLimiter:
    """At most ``rps`` request starts per second (evenly spaced, so no bursts hit the server)."""

    def __init__(self, rps: float) -> None:
        self.interval = 1.0 / rps
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval  # reserved before sleeping: concurrent callers queue up
        if start > now:
            await asyncio.sleep(start - now)


@dataclass
class _LoopState:
    """aiohttp sessions and asyncio primitives belong to one event loop; each loop gets its own."""

    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    slots: asyncio.Semaphore
    limiter: RateLimiter


@dataclass
class OpenAIConfig:
    base_url: str
    model: str = "gpt-4o-mini"
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 20.0
    concurrency: int = 4
    rps: float = 5.0
    max_retries: int = 2  # extra attempts after a 429/503
    retry_after_cap_s: float = 10.0
    # Bound on one product's whole enrichment (retries and repair included), so an outage
    # costs the product path at most this long before the fallback answers.
    deadline_s: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIConfig:
        if not settings.openai_base_url:
            raise ValueError("TAILOR_ENRICHER=openai needs TAILOR_OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1)")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return cls(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=key,
            timeout_s=settings.openai_timeout_s,
            concurrency=settings.openai_concurrency,
            rps=settings.openai_rps,
        )


class OpenAICompatEnricher:
    name = "openai"

    def __init__(self, config: OpenAIConfig, prompt: PromptTemplate | None = None) -> None:
        self.config = config
        self.prompt = prompt or load_prompt()
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._response_format = re_response_format()
        self._state: _LoopState | None = None
        log.info("openai-compatible enricher: %s model=%s prompt=%s", self.url, config.model, self.prompt.fingerprint)

    @property
    def cache_scope(self) -> str:
        """What, besides the product, decides the answer: part of the cache key."""
        return f"{self.name}|{self.config.model}|{self.prompt.fingerprint}"

    async def enrich(self, product: ProductCreated) -> Enrichment:
        deadline = self.config.deadline_s or 3 * self.config.timeout_s + self.config.retry_after_cap_s
        try:
            async with asyncio.timeout(deadline):
                return await self._enrich(product)
        except TimeoutError:
            raise EnrichmentError(f"no valid answer within {deadline:g}s") from None

    async def _enrich(self, product: ProductCreated) -> Enrichment:
        messages = self.prompt.messages(product)
        return await ask_with_repair(self.name, product.product_id, messages, self._complete)

    async def _complete(self, messages: list[dict[str, str]]) -> str:
        """One chat completion's content, waiting out 429/503 (bounded) on the way."""
        payload = {
            "model": self.config.model,
            "messages": messages,
            "temperature": 0,
            "response_format": self._response_format,
        }
        state = self._loop_state()
        for attempt in range(self.config.max_retries + 1):
            async with state.slots:
                await state.limiter.wait()
                status, retry_after, body = await self._post(state.session, payload)
            if status == 200:
                return _content_of(body)
            if status not in RETRYABLE or attempt == self.config.max_retries:
                raise EnrichmentError(self._redact(f"HTTP {status}: {body[:200]}"))
            delay = retry_after_s(retry_after, 0.5 * 2**attempt, self.config.retry_after_cap_s)
            log.info("HTTP %d from %s; retry %d in %.2fs", status, self.url, attempt + 1, delay)
            await asyncio.sleep(delay)  # outside the semaphore: other products keep their slots
        raise AssertionError("unreachable")

    async def _post(self, session: aiohttp.ClientSession, payload: dict[str, Any]) -> tuple[int, str | None, str]:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with session.post(self.url, json=payload, headers=self._headers(), timeout=timeout) as resp:
                return resp.status, resp.headers.get("Retry-After"), await resp.text()
        except TimeoutError:
            raise EnrichmentError(f"timeout after {self.config.timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            # str(exc) names host and port, never headers; redact anyway in case a URL carries the key.
            raise EnrichmentError(self._redact(f"connection failed: {type(exc).__name__}: {exc}")) from None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    def _redact(self, text: str) -> str:
        key = self.config.api_key
        return (text.replace(key, "***") if key else text)[:MAX_REASON_CHARS]

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop or self._state.session.closed:
            self._state = _LoopState(
                loop=loop,
                session=aiohttp.ClientSession(),
                slots=asyncio.Semaphore(self.config.concurrency),
                limiter=RateLimiter(self.config.rps),
            )
        return self._state

    async def aclose(self) -> None:
        if self._state is not None and not self._state.session.closed:
            await self._state.session.close()


def _content_of(body: str) -> str:
    """The assistant message's content from a chat-completions response body."""
    try:
        message = json.loads(body)["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise EnrichmentError(f"not a chat-completions response: {body[:120]!r}") from None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        refusal = message.get("refusal") if isinstance(message, dict) else None
        raise EnrichmentError(f"refused: {str(refusal)[:200]}" if refusal else "answer has no content")
    return content
