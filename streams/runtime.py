"""The embedded runtime: a local Kafka-protocol broker (noida-db) and an embedded Milvus,
as child processes with their data under ``data_dir``, plus topic creation.

Either one is skipped when TAILOR_KAFKA_BOOTSTRAP / TAILOR_MILVUS_URI point elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.group import LeaveGroupRequest

from consumers.kafka import client_kwargs
from schemas import topics
from schemas.settings import Settings

log = logging.getLogger("tailor.runtime")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class ChildProcess:
    """A server we start and own: output to a log file, stopped gently, then firmly."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        # Its own process group: stop() signals the whole group, so a launcher that spawns
        # the real server (and does not forward signals) cannot leave it running.
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        out.close()

    def wait_port(self, port: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not port_open(port):
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not open port {port} in {timeout_s}s; see {self.log_path}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to the group (milvus ignores SIGINT), then SIGKILL after ``timeout_s``."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the group id is the child's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # anything the server itself left behind
            os.killpg(group, signal.SIGKILL)


def _package_file(package: str, name: str) -> Path:
    """A file inside an installed package, located without importing it (milvus_lite's
    __init__ needs pkg_resources, which new setuptools lacks)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed; install the project (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / name


def broker_process(data_dir: Path, port: int) -> ChildProcess:
    # The Rust binary itself, not the `noida-db` Python launcher around it.
    argv = [
        str(_package_file("noida_db", "noida-db")),
        "start",
        "--only",
        "kafka",
        "--kafka-port",
        str(port),
        "--data-dir",
        str(data_dir / "kafka"),
    ]
    return ChildProcess("noida-db", argv, data_dir / "logs" / "broker.log")


def milvus_process(data_dir: Path, port: int) -> ChildProcess:
    """milvus-lite's C++ engine served over gRPC on loopback, so the worker, the retrain
    job and the benchmarks can all open it (in-process it locks the file to one process)."""
    lib = _package_file("milvus_lite", "lib")
    db = (data_dir / "milvus" / "tailor.db").absolute()
    db.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    argv = [str(lib / "milvus"), str(db), f"127.0.0.1:{port}", os.environ.get("TAILOR_MILVUS_LOG_LEVEL", "ERROR")]
    return ChildProcess("milvus", argv, data_dir / "logs" / "milvus.log", env=env)


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create every topic with its partition count (brokers may auto-create with 1)."""
    wanted = [
        *(t for t in topics.ALL_TOPICS if t.name != topics.RECOMMEND_REPLIES.name),
        topics.replies_topic(settings.reply_retention_s),
        topics.changelog_topic(settings.app_id),
        topics.changelog_topic(settings.app_id, topics.PRODUCT_VERSION_TABLE),
    ]
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=int(timeout_s * 1000))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t.name, t.partitions, 1, topic_configs=t.configs) for t in wanted if t.name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            log.info("created topics: %s", ", ".join(t.name for t in new))
        await _set_configs(admin, [t for t in wanted if t.name in existing and t.configs])
    finally:
        await admin.close()
    await init_group_offsets(settings)


async def _set_configs(admin: AIOKafkaAdminClient, specs: list[topics.TopicSpec]) -> None:
    """Give existing topics the configs their spec asks for (topics made by an older Tailor
    or by hand). AlterConfigs replaces a topic's whole set of overrides, so the overrides it
    has are read first and kept."""
    if not specs:
        return
    resources = [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in specs]
    current: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _, _, _, name, entries in response.resources:
            # (name, value, read_only, source, sensitive, synonyms); source 1 = a topic override
            current[name] = {e[0]: e[1] for e in entries if e[3] == 1 and e[1] is not None}
    changed = [t for t in specs if any(current.get(t.name, {}).get(k) != v for k, v in t.configs.items())]
    if changed:
        merged = {t.name: {**current.get(t.name, {}), **t.configs} for t in changed}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, cfg) for name, cfg in merged.items()])
        log.info("set topic configs: %s", "; ".join(f"{t.name} {t.configs}" for t in changed))


# The topics the worker's consumer group reads (faust commits offsets for these).
GROUP_TOPICS = (topics.PRODUCTS_CREATED, topics.PRODUCTS_REENRICH, topics.INTERACTIONS, topics.RECOMMEND_REQUESTS)


async def init_group_offsets(settings: Settings) -> None:
    """Commit the log start as the worker group's offset of every input partition that
    has none (the same place ``auto_offset_reset=earliest`` starts from).

    After a rebalance faust drops the records it fetched but had not handed to an agent yet
    and seeks to the committed offsets. A partition with no committed offset is not moved,
    so the dropped records are skipped for good, and faust's commits for it stop behind the
    gap. A rebalance before the first commit (a broker restart or a second worker joining
    while the first batch is in flight) lost products that way; tests/test_failures.py."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t.name, p) for t in GROUP_TOPICS for p in range(t.partitions)]
        missing = [tp for tp in parts if await consumer.committed(tp) is None]
        if missing:
            consumer.assign(missing)
            starts = await consumer.beginning_offsets(missing)
            await consumer.commit({tp: starts[tp] for tp in missing})
            log.info("initialised offsets of group %s on %d partitions", settings.app_id, len(missing))
    except KafkaError as exc:  # e.g. the group has live members already: they commit themselves
        log.warning("could not initialise offsets of group %s: %s", settings.app_id, exc)
    finally:
        await consumer.stop()


async def expire_group_members(settings: Settings) -> int:
    """Remove every member of the worker group from it; returns how many there were.

    Kafka expires a member whose heartbeats stop after ``session.timeout.ms`` (faust: 30 s).
    noida-db 0.2.3 never does: a member that is gone stays in the group, may be elected
    leader of the next generation and never sends its SyncGroup, so the group waits for its
    assignment forever. Seen after a SIGKILL, and twice when a second worker joined a running
    one (three members for two processes; how the third got there is not pinned down). This
    does the coordinator's part with the LeaveGroup the stale member can no longer send. Live
    members are removed too and simply rejoin (their next heartbeat fails): call it only
    where a rebalance is acceptable (tests, benchmarks, recovery)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        node = await admin.find_coordinator(settings.app_id)
        (described,) = await admin.describe_consumer_groups([settings.app_id], group_coordinator_id=node)
        members = [member[0] for group in described.groups for member in group[5]]
        for member_id in members:
            await admin._send_request(LeaveGroupRequest(settings.app_id, member_id), node)  # noqa: SLF001
        return len(members)
    finally:
        await admin.close()


class EmbeddedRuntime:
    """Starts what the settings do not point elsewhere; a context manager that stops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: list[ChildProcess] = []

    def start(self) -> EmbeddedRuntime:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if s.kafka_bootstrap is None:
                self._start(broker_process(s.data_dir, s.kafka_port), s.kafka_port, 60)
            if s.milvus_uri is None:
                self._start(milvus_process(s.data_dir, s.milvus_port), s.milvus_port, 60)
            asyncio.run(ensure_topics(s))
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, child: ChildProcess, port: int, timeout_s: float) -> None:
        if port_open(port):
            raise RuntimeError(f"port {port} is busy: is another Tailor runtime running? ({child.name})")
        child.start()
        self.children.append(child)
        child.wait_port(port, timeout_s)
        log.info("%s ready on 127.0.0.1:%d", child.name, port)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def __enter__(self) -> EmbeddedRuntime:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
