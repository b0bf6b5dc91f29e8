"""Enrichment by a local causal LM loaded with transformers from a directory on disk
(``local_files_only``: nothing is downloaded at run time), behind the same prompt, answer
validation and one repair retry as the OpenAI-compatible backend.

Loading and generating block, so both run in one dedicated worker thread: that thread is
the lock (one generation at a time, which is all a CPU can usefully do), products waiting
for it queue as cheap futures instead of holding threads, and a product whose deadline
passes while queued is dropped without ever running. Every failure ends as
``EnrichmentError(reason)`` so the caller falls back to rules at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumers.enrichment.answer import MAX_REASON_CHARS, ask_with_repair
from consumers.enrichment.base import Enrichment, EnrichmentError
from consumers.enrichment.prompt import PromptTemplate, load_prompt
from schemas.events import ProductCreated
from schemas.settings import Settings

log = logging.getLogger("tailor.enrichment.transformers")

Messages = list[dict[str, str]]


def _missing_path(path: Path) -> str:
    return (
        f"transformers model path {path} is not a directory: TAILOR_TRANSFORMERS_MODEL_PATH must name a local "
        "model directory (config.json, weights, tokenizer files); nothing is downloaded"
    )


@dataclass
class TransformersConfig:
    model_path: Path
    max_new_tokens: int = 256
    # Bound on one product's whole enrichment: queueing for the model, loading it on first
    # use, both generations. Past it the product gets the fallback at once.
    timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersConfig:
        if settings.transformers_model_path is None:
            # "not available yet" is what callers (and tests) match for a backend that cannot start.
            raise ValueError(
                "enricher 'transformers' is not available yet: set TAILOR_TRANSFORMERS_MODEL_PATH "
                "to a local model directory"
            )
        return cls(
            model_path=settings.transformers_model_path,
            max_new_tokens=settings.transformers_max_new_tokens,
            timeout_s=settings.transformers_timeout_s,
        )


def plain_prompt(messages: Messages) -> str:
    """For tokenizers without a chat template: role-labelled turns, ending where the
    assistant's answer starts."""
    turns = [f"{m['role'].capitalize()}:\n{m['content']}" for m in messages]
    return "\n\n".join([*turns, "Assistant:\n"])


@dataclass
class _Model:
    tokenizer: Any
    model: Any


class TransformersEnricher:
    name = "transformers"

    def __init__(self, config: TransformersConfig, prompt: PromptTemplate | None = None) -> None:
        if not config.model_path.is_dir():  # a config mistake: fail at startup, not per product
            raise FileNotFoundError(_missing_path(config.model_path))
        self.config = config
        self.prompt = prompt or load_prompt()
        self._model: _Model | None = None
        self._load_error: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._active: set[threading.Event] = set()  # stop flags of products being enriched
        log.info("transformers enricher: %s prompt=%s", config.model_path, self.prompt.fingerprint)

    @property
    def cache_scope(self) -> str:
        """What, besides the product, decides the answer: part of the cache key."""
        return f"{self.name}|{self.config.model_path.name}|{self.prompt.fingerprint}"

    async def enrich(self, product: ProductCreated) -> Enrichment:
        stop = threading.Event()
        self._active.add(stop)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await self._enrich(product, stop)
        except TimeoutError:
            raise EnrichmentError(f"no valid answer within {self.config.timeout_s:g}s") from None
        finally:
            # Timed out or cancelled: the model thread cannot be killed, so a generation already
            # running goes on until it sees ``stop`` at its next token (a load goes on to the end
            # and serves later products); a queued one is cancelled before it starts.
            stop.set()
            self._active.discard(stop)

    async def _enrich(self, product: ProductCreated, stop: threading.Event) -> Enrichment:
        messages = self.prompt.messages(product)
        return await ask_with_repair(self.name, product.product_id, messages, lambda m: self._complete(m, stop))

    async def _complete(self, messages: Messages, stop: threading.Event) -> str:
        """The model's answer to ``messages``, computed in the model thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tailor-transformers")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._answer, messages, stop)

    def _answer(self, messages: Messages, stop: threading.Event) -> str:
        if stop.is_set():  # its product already gave up while this waited for the thread
            raise EnrichmentError("cancelled")
        return self.generate(self.render(messages), stop)

    # --- in the model thread ------------------------------------------------------------

    def _loaded(self) -> _Model:
        """The tokenizer and model, loaded on first use. A failed load is remembered, so a
        broken model directory costs each product one fast failure, not one load attempt
        (fix the directory, then restart the worker)."""
        if self._model is not None:
            return self._model
        if self._load_error is not None:
            raise EnrichmentError(self._load_error)
        try:
            self._model = self._load()
        except Exception as exc:  # whatever the loader raises, the backend is unavailable
            self._load_error = f"model load failed: {type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
            log.error("transformers enricher: %s", self._load_error)
            raise EnrichmentError(self._load_error) from None
        return self._model

    def _load(self) -> _Model:
        path = self.config.model_path
        if not path.is_dir():
            raise FileNotFoundError(_missing_path(path))
        # Imported here: the rules and openai backends must not pay for importing transformers.
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        model.eval()
        log.info("transformers enricher: loaded %s (%s)", path, type(model).__name__)
        return _Model(tokenizer, model)

    def render(self, messages: Messages) -> str:
        """The prompt text: the tokenizer's chat template when it has one, else plain turns."""
        tokenizer = self._loaded().tokenizer
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if isinstance(text, str):
                return text
        return plain_prompt(messages)

    def generate(self, prompt: str, stop: threading.Event) -> str:
        """Greedy continuation of ``prompt`` (the new text only), at most ``max_new_tokens``;
        ends early when ``stop`` is set. The one method that turns a prompt into text."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stopped(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        loaded = self._loaded()
        tokenizer, model = loaded.tokenizer, loaded.model
        # A chat template already wrote the special tokens (BOS ...) into the text.
        templated = bool(getattr(tokenizer, "chat_template", None))
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=not templated).to(model.device)
        prompt_len = int(inputs["input_ids"].shape[1])
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and prompt_len + self.config.max_new_tokens > limit:
            raise EnrichmentError(
                f"prompt of {prompt_len} tokens + {self.config.max_new_tokens} new exceeds the model's {limit}"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                stopping_criteria=StoppingCriteriaList([_Stopped()]),
            )
        if stop.is_set():
            raise EnrichmentError("cancelled")
        return str(tokenizer.decode(output[0, prompt_len:], skip_special_tokens=True))

    async def aclose(self) -> None:
        for stop in list(self._active):
            stop.set()
        if self._executor is not None:
            # Queued work is dropped; a running generation ends after its current token step.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
