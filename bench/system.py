"""A running Tailor for the system benchmarks: a real noida-db broker, a real embedded
Milvus and the real worker (``python -m streams.cli worker``) as child processes, on free
ports, with their data in a temp dir; plus the shared helpers of the benchmarks (catalog
seeding, open-loop schedules, worker metrics, CDF plots).

The catalog is seeded directly, not through Kafka: synthetic products of the sample's
generator family (``bench.synth``), embedded by the worker's own ``ItemEncoder`` (same model
version, same runtime RE vocabulary file) in batches and upserted into the worker's Milvus
collection before the worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import synth
from bench.report import RESULTS, console
from consumers.recommend_client import RecommendClient
from consumers.vector_store import ItemRow, VectorStore
from models import registry
from schemas.events import ProductEnriched
from schemas.settings import Settings
from streams.products import item_row as product_row
from streams.runtime import (
    ChildProcess,
    broker_process,
    ensure_topics,
    expire_group_members,
    free_port,
    milvus_process,
)
from streams.thread_cpu import ROLES, stat_cpu_seconds

SEED_BATCH = 2000
BENCH_MODELS = Path("var") / "bench-models"


def collection_name(settings: Settings) -> str:
    """The Milvus collection the worker serves from (the LATEST model's item space): the
    one place to adapt when the naming of collections changes."""
    from streams import services

    for owner in (services, registry):
        active = getattr(owner, "active_collection", None)
        if active is not None:
            return str(active(settings))
    return settings.collection


def ensure_model(models: Path | None, train_data: str = "sample") -> Path:
    """A model directory whose LATEST is a trained item tower: ``models`` if given, else the
    configured TAILOR_MODEL_DIR when it holds one, else one trained now on ``train_data``
    (the sample: ~1 min) under var/bench-models, reused by later runs."""
    if models is not None:
        if registry.latest_version(models) is None:
            raise SystemExit(f"{models}: no LATEST model version there")
        return models
    for candidate in (Settings().models_path, BENCH_MODELS):
        if registry.is_trained(candidate):
            return candidate
    from models.train_item import TrainConfig
    from streams.training import train_and_publish

    console.print(f"[yellow]no trained item tower found: training one on {train_data!r} into {BENCH_MODELS}")
    train_and_publish(train_data, BENCH_MODELS, TrainConfig())
    return BENCH_MODELS


@dataclass
class Catalog:
    """What the benchmark knows of the seeded catalog."""

    ids: np.ndarray  # int64
    vectors: np.ndarray  # (n, 128) float32, as stored
    fine: list[str]
    seconds: float = 0.0

    def by_fine(self) -> dict[str, np.ndarray]:
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(self.fine):
            groups.setdefault(f, []).append(i)
        return {f: np.asarray(ix) for f, ix in groups.items()}


@dataclass
class System:
    """Broker + Milvus + worker on free ports under ``root``. ``env`` goes to the worker
    on top of the connection settings (e.g. TAILOR_RULES_ZERO_SHOT)."""

    root: Path
    models: Path
    env: dict[str, str] = field(default_factory=dict)
    worker: subprocess.Popen[bytes] | None = None
    services: Any = None  # streams.services.Services of the benchmark process, once built
    # More worker processes in the worker's consumer group (``spawn_replicas``), and the
    # metrics port of each.
    replicas: list[subprocess.Popen[bytes]] = field(default_factory=list)
    replica_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kafka_port, self.milvus_port, self.metrics_port = free_port(), free_port(), free_port()
        self.base_env = {
            **os.environ,
            "TAILOR_DATA_DIR": str(self.root),
            "TAILOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "TAILOR_MILVUS_URI": f"http://127.0.0.1:{self.milvus_port}",
            "TAILOR_MODEL_DIR": str(self.models.absolute()),
            "TAILOR_ENRICHER": "rules",
            "TAILOR_LOG_LEVEL": "warning",
        }
        self.broker = broker_process(self.root, self.kafka_port)
        self.milvus = milvus_process(self.root, self.milvus_port)
        self.started: list[ChildProcess] = []

    def worker_env(self) -> dict[str, str]:
        return {**self.base_env, **self.env}

    @property
    def settings(self) -> Settings:
        """The worker's settings, as the benchmark process sees them."""
        env = {k.removeprefix("TAILOR_").lower(): v for k, v in self.worker_env().items() if k.startswith("TAILOR_")}
        return Settings(**env)

    @property
    def log_path(self) -> Path:
        return self.root / "logs" / "worker.log"

    # ------------------------------------------------------------------ servers
    def start_servers(self) -> None:
        for child, port in ((self.broker, self.kafka_port), (self.milvus, self.milvus_port)):
            child.start()
            self.started.append(child)
            child.wait_port(port, 60)
        asyncio.run(ensure_topics(self.settings))

    def store(self) -> VectorStore:
        return VectorStore(self.settings.milvus, collection_name(self.settings), connect_timeout_s=60)

    # ------------------------------------------------------------------ worker
    def start_worker(self, **env: str) -> float:
        """Start the worker (``env`` on top, kept for restarts) and wait until it answers;
        returns the seconds that took."""
        t0 = time.perf_counter()
        self.spawn_worker(**env)
        asyncio.run(self.wait_ready())
        return time.perf_counter() - t0

    def spawn_worker(self, **env: str) -> None:
        """Start the worker process and return at once."""
        self.env.update(env)
        self.worker = self._popen_worker(self.worker_env(), self.metrics_port, self.log_path)

    def _popen_worker(self, env: dict[str, str], metrics_port: int, log_path: Path) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            argv = [sys.executable, "-m", "streams.cli", "worker", "--metrics-port", str(metrics_port)]
            return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def spawn_replicas(self, n: int) -> None:
        """``n`` more worker processes (the worker's settings, same consumer group: faust
        splits the partitions between them), each with its own data dir as each docker
        replica has its own volume, holding a copy of the runtime RE vocabulary, and its
        own metrics port. Return at once; ``wait_all_ready`` waits for them."""
        vocab = self.settings.vocab_file("any").parent  # the worker's vocabulary logs
        for _ in range(n):
            i = len(self.replicas) + 2  # worker 1 is ``self.worker``
            data = self.root / f"worker-{i}"
            if vocab.exists():
                shutil.copytree(vocab, data / vocab.name, dirs_exist_ok=True)
            port = free_port()
            env = {**self.worker_env(), "TAILOR_DATA_DIR": str(data)}
            self.replicas.append(self._popen_worker(env, port, self.log_path.with_name(f"worker-{i}.log")))
            self.replica_ports.append(port)

    async def wait_all_ready(self, timeout_s: float = 300, stale_after_s: float = 45) -> None:
        """Until every replica has answered a request: requests for ever new users (their
        keys spread over the request partitions) while the group rebalances. A rebalance
        still unfinished after ``stale_after_s`` is taken to wait for a member that is gone
        (noida-db never expires one; ``streams.runtime.expire_group_members``): the group is
        emptied once and the live workers rejoin."""
        deadline = time.monotonic() + timeout_s
        stale_at = time.monotonic() + stale_after_s
        async with RecommendClient(self.settings, timeout_s=3) as client:
            for round_ in itertools.count():
                if stale_at and time.monotonic() > stale_at:
                    expired = await expire_group_members(self.settings)
                    console.print(f"[yellow]rebalance stuck: {expired} group members expired, the live ones rejoin")
                    stale_at = 0.0
                for proc in self.replicas:
                    if proc.poll() is not None:
                        raise RuntimeError(f"a worker replica exited with {proc.returncode} (logs under {self.root})")
                if all(self._metric_at(p, "tailor_request_seconds_count") > 0 for p in self.replica_ports):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker replicas not answering after {timeout_s:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.gather(*(client.recommend(f"bench-ready-{round_}-{j}", k=1) for j in range(8)))

    async def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        async with RecommendClient(self.settings, timeout_s=3) as client:
            while True:
                if self.worker and self.worker.poll() is not None:
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"worker exited with {self.worker.returncode}:\n{tail}")
                try:
                    await client.recommend("bench-ready", k=1)
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise

    def stop_worker(self) -> None:
        """Stop the worker and its replicas (SIGTERM: faust leaves the group cleanly)."""
        procs = [p for p in (self.worker, *self.replicas) if p is not None and p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.worker = None
        self.replicas.clear()
        self.replica_ports.clear()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the Prometheus samples ``name`` whose labels include ``labels``, over the
        worker and its replicas."""
        return sum(self._metric_at(port, name, **labels) for port in (self.metrics_port, *self.replica_ports))

    def _metric_at(self, port: int, name: str, **labels: str) -> float:
        """As ``metric``, of the worker process serving metrics on ``port`` (0 while a
        replica's endpoint is not up yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            if port == self.metrics_port:
                raise
            return 0.0
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
            if not m:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of each process of the system and of this
        one (the load generator); cores over a phase = the difference / its wall time."""
        workers = [p for p in (self.worker, *self.replicas) if p is not None]
        out = {"worker": sum(proc_cpu_seconds(p.pid) for p in workers)}  # all replicas together
        for child in (self.broker, self.milvus):
            out[child.name] = proc_cpu_seconds(child.proc.pid) if child.proc else 0.0
        out["load generator"] = time.process_time()
        return out

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of the workers' threads by role (``streams.thread_cpu``),
        summed over the replicas."""
        return {role: self.metric("tailor_thread_cpu_seconds_total", role=role) for role in ROLES}

    def events_ok(self, topic: str) -> float:
        return self.metric("tailor_events_total", topic=topic, outcome="ok")

    def stop(self) -> None:
        self.stop_worker()
        self.close_services()
        for child in reversed(self.started):
            child.stop()
        self.started.clear()

    # ------------------------------------------------------------------ models
    def train_ranking_stages(self, items: Sequence[ProductEnriched], clicks: Sequence[Any], epochs: int = 1) -> str:
        """A model version with trained ranking stages (user tower, DeepFM, self-attention
        reranker, co-occurrence, SASRec) over the seeded item space, trained on ``clicks`` (``Interaction``s) by
        ``tailor retrain``'s own code, so the worker serves the full request path. Call
        after seeding, before the worker starts. Written to a copy of the model directory
        under this run's root (the shared bench model stays an item tower only). What is
        measured is the stages' cost: a few epochs on synthetic users, not their quality."""
        from models.interactions import Event, InteractionLog
        from streams.retrain import RetrainOptions, retrain

        private = self.root / "models"
        version = registry.latest_version(self.models)
        shutil.copytree(self.models / str(version), private / str(version))
        (private / "LATEST").write_text(str(version))
        self.models = private
        self.base_env["TAILOR_MODEL_DIR"] = str(private.absolute())
        events = [Event(c.user_id, c.product_id, c.ts.timestamp(), c.kind) for c in clicks]
        log = InteractionLog("bench users", list(items), events, {})
        opts = RetrainOptions(
            user_epochs=epochs,
            deepfm_epochs=epochs,
            diversity_epochs=epochs,
            sasrec_epochs=epochs,
            publish=False,
            evaluate=False,
            version="bench-ranking",
        )
        manifest = retrain(self.settings, opts, log)
        self.close_services()  # the next build_services loads the new version
        return manifest.version

    # ------------------------------------------------------------------ catalog
    def close_services(self) -> None:
        if self.services is not None:
            with contextlib.suppress(Exception):
                self.services.store.close()
            self.services = None

    def build_services(self) -> Any:
        """The worker's services (model, runtime RE vocabulary, Milvus collection, enricher,
        recommender) built in the benchmark process, once: the same code path as the worker."""
        if self.services is None:
            from streams.services import build

            self.services = build(self.settings)
        return self.services

    def seed_catalog(self, n: int, seed: int = 0, extra: Sequence[ProductEnriched] = ()) -> Catalog:
        """``n`` synthetic products (all with RE, so nothing to enrich), then ``extra``,
        embedded with the worker's encoder and upserted straight into its collection. Call
        before the worker starts: the RE terms they add go to the worker's runtime vocabulary
        file; afterwards the benchmark's encoder grows its vocabulary in memory only."""
        t0 = time.perf_counter()
        services = self.build_services()
        encoder, store = services.encoder, services.store
        ids, vecs, fines = [], [], []
        items = itertools.chain((synth.as_enriched(p) for p in synth.products(n, seed)), extra)
        total = n + len(extra)
        for start in range(0, total, SEED_BATCH):
            batch = list(itertools.islice(items, SEED_BATCH))
            vectors = encoder.encode_growing(batch)
            # The worker's own row builder: the reranker reads the STD/RE ``features``.
            version = {"model_version": encoder.version}
            rows = [
                product_row(e if e.model_version else e.model_copy(update=version), v.tolist())
                for e, v in zip(batch, vectors, strict=True)
            ]
            store.upsert(rows)
            ids.extend(e.product_id for e in batch)
            fines.extend(e.fine for e in batch)
            vecs.append(vectors)
            done = start + len(batch)
            console.print(f"[dim]seeded {done:,}/{total:,} items ({time.perf_counter() - t0:.0f}s)", end="\r")
        store.client.flush(store.collection)
        encoder.re_vocab.path = None  # the worker owns the file from now on
        console.print()
        vectors = np.concatenate(vecs) if vecs else np.zeros((0, 128), np.float32)
        return Catalog(np.asarray(ids, dtype=np.int64), vectors, fines, time.perf_counter() - t0)


@contextlib.contextmanager
def running(models: Path, keep: bool = False, **env: str) -> Iterator[System]:
    """Servers started (no worker yet) in a temp dir; everything stopped on exit. The
    benchmark's own Kafka consumers pause on empty fetches as the worker's do
    (``consumers.idle_fetch``, applied by every client's settings)."""
    tmp = Path(tempfile.mkdtemp(prefix="tailor-bench-"))
    system = System(tmp, models, dict(env))
    try:
        system.start_servers()
        yield system
    finally:
        system.stop()
        if keep:
            console.print(f"[dim]data kept in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def item_row(pid: int, vector: np.ndarray, title: str = "bench", fine: str = "bench") -> ItemRow:
    return ItemRow(
        product_id=pid,
        vector=np.asarray(vector, dtype=np.float32).tolist(),
        title=title,
        coarse="bench",
        fine=fine,
        gender="unisex",
        price=10.0,
        model_version="bench",
    )


async def open_loop(rate: float, seconds: float, fire: Callable[[int, float], Awaitable[None]]) -> None:
    """Call ``fire(i, scheduled_time)`` at ``rate`` per second for ``seconds``, on schedule
    whether or not earlier calls have finished (open loop; latency is measured from the
    scheduled time, so a stalled sender cannot hide queueing)."""
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, due)))
    await asyncio.gather(*tasks)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc``; 0 once it is gone)."""
    try:
        return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))
    except OSError:
        return 0.0


def cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each process used between two ``System.cpu_seconds`` readings."""
    return {name: (after[name] - before.get(name, 0.0)) / seconds for name in after}


def stats(samples_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "p50_ms": float(np.percentile(arr, 50)),
        "p95_ms": float(np.percentile(arr, 95)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "mean_ms": float(arr.mean()),
    }


def ratios(rows: list[dict[str, Any]], baseline: dict[str, Any], keys: Sequence[str] = ("p50_ms", "p99_ms")) -> None:
    """Add ``x_<key>`` = row / baseline columns (in place)."""
    for row in rows:
        for k in keys:
            if k in row and baseline.get(k):
                row[f"x_{k.removesuffix('_ms')}"] = row[k] / baseline[k]


def plot_latency(
    name: str,
    title: str,
    series: dict[str, Sequence[float]],
    goal_ms: float | None = None,
    timeline: dict[str, Sequence[tuple[float, float]]] | None = None,
) -> Path:
    """CDF (log x) and histogram of each latency series, and with ``timeline`` (label ->
    (seconds since start, ms) points) latency over the run; ``bench/results/<name>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if timeline else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.8))
    ax_cdf, ax_hist = axes[0], axes[1]
    positive = [np.asarray(v, dtype=np.float64) for v in series.values() if len(v)]
    lo = max(min(float(v.min()) for v in positive), 1e-3) if positive else 1e-3
    hi = max(float(v.max()) for v in positive) if positive else 1.0
    bins = np.geomspace(lo, hi * 1.01, 60)
    for label, values in series.items():
        arr = np.sort(np.asarray(values, dtype=np.float64))
        if arr.size == 0:
            continue
        ax_cdf.plot(arr, np.arange(1, arr.size + 1) / arr.size, label=f"{label} (p99 {np.percentile(arr, 99):.1f} ms)")
        ax_hist.hist(arr, bins=bins, histtype="step", label=label)
    for ax in (ax_cdf, ax_hist):
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        if goal_ms:
            ax.axvline(goal_ms, color="red", linestyle="--", linewidth=1, label=f"goal {goal_ms:g} ms")
        ax.grid(True, which="both", alpha=0.3)
    ax_cdf.set_ylabel("share of samples ≤ x")
    ax_cdf.axhline(0.99, color="gray", linewidth=0.6)
    ax_hist.set_ylabel("samples")
    ax_cdf.legend(fontsize=7, loc="lower right")
    ax_hist.legend(fontsize=7)
    if timeline:
        ax_time = axes[2]
        for label, points in timeline.items():
            if points:
                t, ms = zip(*sorted(points), strict=True)
                ax_time.plot(t, ms, ".", markersize=3, label=label)
        if goal_ms:
            ax_time.axhline(goal_ms, color="red", linestyle="--", linewidth=1)
        ax_time.set_yscale("log")
        ax_time.set_xlabel("seconds since the first event of its run")
        ax_time.set_ylabel("latency (ms, log scale)")
        ax_time.grid(True, which="both", alpha=0.3)
        ax_time.legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 60 * panels + 40)), fontsize=9)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    console.print(f"[dim]wrote {path}")
    return path
