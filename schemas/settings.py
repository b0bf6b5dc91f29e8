"""Runtime configuration, from TAILOR_* environment variables (pydantic-settings).

Defaults describe the embedded runtime: a local noida-db broker and an embedded Milvus
under ``data_dir``. Point ``kafka_bootstrap`` / ``milvus_uri`` at real servers to leave it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    # Kafka: unset -> `tailor up` starts an embedded noida-db broker on kafka_port.
    kafka_bootstrap: str | None = None
    kafka_port: int = 19092
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # TLS (SSL / SASL_SSL): the CA bundle to trust (unset: the system's CAs) and, for brokers
    # that authenticate clients by certificate, the client's certificate chain and key.
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    # A pause after an empty fetch (consumers.idle_fetch): the embedded broker answers one
    # at once, and an idle consumer would spin; 0 turns it off. Above the first pause, the max
    # lets it double with each further empty fetch (back to the first value once records
    # come): an idle worker 0.36 -> 0.11 cores at 16 ms, for up to that much more latency on a
    # request after a quiet spell; a busy worker's fetch loop then takes less of the GIL from
    # its request path (README "Request latency"). 2 = a fixed 2 ms pause.
    kafka_idle_fetch_backoff_ms: float = Field(default=2.0, ge=0, le=1000)
    kafka_idle_fetch_max_backoff_ms: float = Field(default=16.0, ge=0, le=1000)
    # Record batches our producers write (faust's too: replies, table changelogs). JSON
    # compresses ~5x, and the embedded broker rewrites its whole state file every couple of
    # seconds while anything is written, so its CPU grows with the bytes it retains (README
    # "Request latency"). gzip needs nothing more; snappy/lz4/zstd need cramjam
    # (aiokafka's extras). Consumers read any of them.
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "gzip"
    # Milvus: unset -> the embedded Milvus started by `tailor up` on milvus_port.
    milvus_uri: str | None = None
    milvus_port: int = 19531
    milvus_token: SecretStr | None = None
    collection: str = "tailor_items"  # prefix: one collection per item space, "<prefix>__<space>"
    # Point the alias <collection> at the live item space's collection (Milvus standalone /
    # cluster; milvus-lite has no aliases).
    milvus_alias: bool = False
    # After a swap to a new item space, drop the collections of item spaces older than the
    # one it replaced (the replaced one stays: other workers may still serve it).
    drop_old_spaces: bool = True

    app_id: str = "tailor"
    model_dir: Path | None = None
    enricher: Literal["rules", "openai", "transformers"] = "rules"
    # The rules enricher's MiniLM zero-shot matching for keys lexicons and measurements
    # leave empty: ~33 ms per H&M item for few extra keys (bench/enrichment.py).
    rules_zero_shot: bool = True
    # TAILOR_ENRICHER=openai: any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, ...).
    openai_base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    openai_model: str = "gpt-4o-mini"
    openai_api_key: SecretStr | None = None  # sent only as a Bearer header; unset for local servers
    openai_timeout_s: float = Field(default=20.0, gt=0)
    openai_concurrency: int = Field(default=4, ge=1, le=256)
    openai_rps: float = Field(default=5.0, gt=0)
    # TAILOR_ENRICHER=transformers: a local model directory (config, weights, tokenizer); never downloaded.
    transformers_model_path: Path | None = None
    transformers_max_new_tokens: int = Field(default=256, ge=1, le=4096)
    transformers_timeout_s: float = Field(default=60.0, gt=0)  # one product's whole enrichment
    # LLM re-enrichment of products embedded from the fallback: backoff doubles from this.
    reenrich_backoff_s: float = Field(default=5.0, gt=0)
    reenrich_max_backoff_s: float = Field(default=600.0, gt=0)
    reenrich_max_attempts: int = Field(default=12, ge=1, le=1000)
    sequence_length: int = Field(default=50, ge=1, le=1000)
    request_timeout_s: float = Field(default=10.0, gt=0)
    # How long the broker keeps replies (``retention.ms`` of tailor.recommend.replies). A
    # reply matters for the seconds its caller waits; kept forever, the replies were the
    # fastest-growing topic (~3 KB each, 50/s = 13 GB a day), and the embedded broker's CPU
    # grows with what it retains (README "Request latency").
    reply_retention_s: int = Field(default=60, ge=10, le=7 * 24 * 3600)
    candidates: int = Field(default=100, ge=1, le=1000)
    # Requests a worker holds at once (faust agent instances): the batch being answered, the
    # next one forming, and replies waiting for their acknowledgement. With 4 a worker capped
    # at ~47 requests/s (4 / ~85 ms) however idle its CPU was; with 16, as many as one batch,
    # the next batch could not fill while one ran and requests waited in Kafka instead (50/s:
    # p99 9.0 s vs 1.2 s at 32, README "Request latency"). Keep it >= 2 x request_batch.
    request_concurrency: int = Field(default=32, ge=1, le=256)
    # Of those, the ones waiting while a batch is answered go together in the next
    # micro-batch (streams.batching) of up to ``request_batch``: one forward of each model and
    # one Milvus call per stage for the batch (a DeepFM forward costs about the same for 100
    # rows as for 800). ``request_batches_in_flight`` batches run at once: an idle worker
    # starts a request at once (a batch of one); one batch at a time measured best on 2 cores
    # (README "Request latency"). request_batch=1 with
    # request_batches_in_flight=request_concurrency answers each request alone.
    request_batch: int = Field(default=16, ge=1, le=256)
    request_batches_in_flight: int = Field(default=1, ge=1, le=256)
    # Intra-op threads of torch and of numpy's BLAS in the worker. Its models run on one
    # request's tens of rows, where a second thread only waits for the first: with the CPU
    # shared (Milvus, the broker, other requests) 2 threads made a transformer layer 10x
    # slower (23 vs 2.4 ms). Parallelism comes from partitions and replicas instead.
    compute_threads: int = Field(default=1, ge=1, le=256)
    # Rows read from Milvus are kept this long in the worker (consumers.row_cache); a changed
    # product's row is forgotten at once (streams.row_sync reads every worker's change
    # notices), so the TTL only bounds what a missed notice could leave stale. 0 turns it off.
    row_cache_ttl_s: float = Field(default=600.0, ge=0, le=86_400)
    row_cache_rows: int = Field(default=100_000, ge=0, le=10_000_000)
    worker_web_port: int = 6066
    log_level: str = "info"

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def milvus(self) -> str:
        return self.milvus_uri or f"http://127.0.0.1:{self.milvus_port}"

    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def enrich_cache(self) -> Path:
        """Persisted LLM enrichment answers, keyed by content hash (replays cost nothing)."""
        return self.data_dir / "enrichment" / "cache.sqlite3"

    def collection_for(self, item_space: str) -> str:
        """The Milvus collection of one item space (the vectors of one item tower): a new
        item tower fills a new collection while the old one keeps serving."""
        slug = "".join(c if c.isalnum() else "_" for c in item_space.lower())
        return f"{self.collection}__{slug}"[:255]

    def vocab_file(self, model_version: str) -> Path:
        """The worker's RE vocabulary log for one model version (its ids index that
        version's embedding table)."""
        return self.data_dir / "vocab" / f"re_vocab-{model_version}.jsonl"


def load_settings() -> Settings:
    return Settings()
