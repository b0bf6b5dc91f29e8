"""Test harness: a real noida-db broker, a real embedded Milvus and the real worker, as
processes in a temp dir on free ports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.kafka import client_kwargs
from consumers.recommend_client import RecommendClient
from schemas.settings import Settings
from streams.runtime import (
    ChildProcess,
    broker_process,
    ensure_topics,
    expire_group_members,
    free_port,
    milvus_process,
)


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        kafka_port, milvus_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "TAILOR_DATA_DIR": str(root),
            "TAILOR_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "TAILOR_MILVUS_URI": f"http://127.0.0.1:{milvus_port}",
            "TAILOR_LOG_LEVEL": "info",
        }
        self.settings = Settings(
            data_dir=root, kafka_bootstrap=f"127.0.0.1:{kafka_port}", milvus_uri=f"http://127.0.0.1:{milvus_port}"
        )
        self.broker = broker_process(root, kafka_port)
        self.milvus = milvus_process(root, milvus_port)
        self.kafka_port, self.milvus_port = kafka_port, milvus_port
        self.worker: subprocess.Popen[bytes] | None = None
        self.base_env = dict(self.env)

    def start(self, topics: bool = True) -> None:
        """Broker, Milvus, then the worker; ``topics=False`` skips `tailor topics`' step
        (a fresh cluster: the worker has to create them) and does not wait for the worker."""
        for child, port in ((self.broker, self.kafka_port), (self.milvus, self.milvus_port)):
            child.start()
            child.wait_port(port, 60)
        if not topics:
            self.spawn_worker()
            return
        asyncio.run(ensure_topics(self.settings))
        self.start_worker()

    def spawn_worker(self) -> None:
        log = (self.root / "logs" / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def start_worker(self) -> None:
        self.spawn_worker()
        asyncio.run(self.wait_ready())

    async def restart(self, **env: str) -> None:
        """Stop the worker cleanly and start it again (from async tests), with ``env``
        on top of the harness's environment (none: back to the defaults)."""
        await asyncio.to_thread(self.stop_worker)
        self.env = {**self.base_env, **env}
        self.spawn_worker()
        await self.wait_ready()

    async def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        async with RecommendClient(self.settings, timeout_s=3) as client:
            while True:
                if self.worker and self.worker.poll() is not None:
                    raise RuntimeError(f"worker exited: {self.worker_log()[-3000:]}")
                try:
                    await client.recommend("harness-ready", k=1)
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)  # faust leaves its group: noida never evicts
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        self.worker = None

    async def kill_worker(self) -> None:
        """SIGKILL the worker: no clean shutdown, no final commit, no producer flush, no
        LeaveGroup. Then expire its group membership, as Kafka's coordinator would."""
        assert self.worker is not None
        self.worker.kill()
        await asyncio.to_thread(self.worker.wait)
        self.worker = None
        await self.expire_members()

    async def expire_members(self) -> None:
        """Remove every member of the worker's consumer group (call it only while no worker
        runs): a SIGKILLed member would stay in noida-db's group for ever
        (``streams.runtime.expire_group_members``)."""
        await expire_group_members(self.settings)

    async def committed(self, topic: str, partitions: int) -> dict[int, int]:
        """The worker group's committed offset per partition (the next offset it will read;
        0 where it has committed nothing, as it then reads from the start)."""
        admin = AIOKafkaAdminClient(**client_kwargs(self.settings))
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                self.settings.app_id, partitions=[TopicPartition(topic, p) for p in range(partitions)]
            )
            return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}
        finally:
            await admin.close()

    async def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        consumer = AIOKafkaConsumer(**client_kwargs(self.settings), group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
            return {tp.partition: off for tp, off in ends.items()}
        finally:
            await consumer.stop()

    def restart_child(self, child: ChildProcess, port: int, down_s: float = 0.0) -> None:
        """Stop a server (SIGTERM) and start it again on the same port and data dir."""
        child.stop()
        time.sleep(down_s)
        child.start()
        child.wait_port(port, 60)

    def worker_log(self) -> str:
        return (self.root / "logs" / "worker.log").read_text(errors="replace")

    def stop(self) -> None:
        self.stop_worker()
        for child in (self.milvus, self.broker):
            child.stop()


async def read_topic(settings: Settings, topic: str, partitions: int, until, timeout_s: float = 30.0) -> list:
    """Read ``topic`` from the beginning until ``until(records)`` holds; return the records."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while not until(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met in {timeout_s}s ({len(records)} records read)")
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


__all__ = ["Stack", "read_topic", "ChildProcess"]
