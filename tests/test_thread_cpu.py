"""The worker's CPU split by thread role (streams.thread_cpu), read from this process's /proc."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.thread_cpu import ROLES, ThreadCpuCollector, role_of, stat_cpu_seconds

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc only")


def burn(cpu_s: float) -> None:
    """Spin until this thread has used ``cpu_s`` of CPU (not of wall time: a busy machine
    only makes it take longer)."""
    start = time.thread_time()
    while time.thread_time() - start < cpu_s:
        pass


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    return {role: registry.get_sample_value("tailor_thread_cpu_seconds_total", {"role": role}) or 0.0 for role in ROLES}


class AIOKafkaConsumerThread:  # named as faust's: the role is told by the service's class name
    pass


def test_roles_of_threads() -> None:
    assert role_of(threading.main_thread()) == "event loop"
    consumer = threading.Thread(target=lambda: None)
    consumer.service = AIOKafkaConsumerThread()  # type: ignore[attr-defined]  # as mode's WorkerThread
    assert role_of(consumer) == "kafka consumer"
    assert role_of(threading.Thread(target=lambda: None, name="asyncio_0")) == "request path"
    assert role_of(threading.Thread(target=lambda: None, name="grpc-poller")) == "other"


def test_executor_cpu_is_the_request_path_and_stays_after_the_thread_ends() -> None:
    registry = CollectorRegistry()
    registry.register(ThreadCpuCollector())
    before = scrape(registry)

    async def main() -> dict[str, float]:
        await asyncio.to_thread(burn, 0.3)
        return scrape(registry)  # the executor's thread is alive until asyncio.run ends

    during = asyncio.run(main())
    assert during["request path"] - before["request path"] >= 0.25  # clock ticks: 10 ms each
    after = scrape(registry)  # the executor thread has ended
    assert all(after[role] >= during[role] for role in ROLES), (during, after)  # never down
    assert after["request path"] == during["request path"]


def test_roles_sum_to_the_process_cpu() -> None:
    registry = CollectorRegistry()
    registry.register(ThreadCpuCollector())
    worker = threading.Thread(target=burn, args=(0.2,))  # a short-lived thread: "other"
    worker.start()
    worker.join()
    roles = scrape(registry)
    assert roles["other"] >= 0.15
    assert sum(roles.values()) == pytest.approx(stat_cpu_seconds(Path("/proc/self/stat")), abs=0.05)


def test_faust_consumer_thread_is_the_kafka_consumer() -> None:
    """faust runs aiokafka in a mode ServiceThread, started as a mode WorkerThread."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from mode.threads import WorkerThread

    thread = WorkerThread(object.__new__(AIOKafkaConsumerThread))  # as ServiceThread.start does
    assert role_of(thread) == "kafka consumer"
