"""CPU seconds of the worker's threads by role, as a Prometheus counter.

One worker process does its Kafka I/O, its event loop and its model forwards in
different threads that share one GIL, so "the worker uses a core" says little about where
a request's time goes. ``tailor_thread_cpu_seconds_total{role}`` splits it:

- ``kafka consumer``: faust's consumer thread (aiokafka's fetch loop; on a broker that
  answers an empty fetch at once, the idle fetches are paid here);
- ``event loop``: the main thread (faust's agents, decoding, replies, the producer);
- ``request path``: the event loop's default executor (``asyncio.to_thread``: history
  reads, user tower, Milvus search, DeepFM, reranker);
- ``other``: every other thread of the process (other faust service threads, gRPC's and
  torch's own threads).

Read from ``/proc/self/task`` (Linux); elsewhere the collector reports nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

ROLES = ("kafka consumer", "event loop", "request path", "other")
_TASKS = Path("/proc/self/task")


def role_of(thread: threading.Thread) -> str:
    """The role of a Python thread (see the module's docstring)."""
    service = getattr(thread, "service", None)  # mode's WorkerThread runs a ServiceThread
    if service is not None and "ConsumerThread" in type(service).__name__:
        return "kafka consumer"
    if thread is threading.main_thread():
        return "event loop"
    if thread.name.startswith("asyncio_"):  # asyncio's default executor names its threads so
        return "request path"
    return "other"


def stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds in a ``/proc`` stat file (of a process or of a thread)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class ThreadCpuCollector(Collector):
    """Scraped on demand. A thread's seconds are filed under its role while it is alive
    and kept there after it ends; "other" is the rest of the process's CPU (so the roles
    sum to it), which also takes a short-lived thread that ended between two scrapes."""

    def __init__(self, tasks: Path = _TASKS) -> None:
        self._tasks = tasks
        self._named: dict[int, tuple[str, float]] = {}  # native id -> (role, seconds), not "other"
        self._other = 0.0
        self._lock = threading.Lock()

    def collect(self) -> Iterator[CounterMetricFamily]:
        if not self._tasks.is_dir():
            return
        with self._lock:
            totals = self._totals()
        family = CounterMetricFamily(
            "tailor_thread_cpu_seconds", "CPU seconds of the worker's threads by role", labels=["role"]
        )
        for role in ROLES:
            family.add_metric([role], totals[role])
        yield family

    def _totals(self) -> dict[str, float]:
        process = stat_cpu_seconds(self._tasks.parent / "stat")
        for thread in threading.enumerate():
            role = role_of(thread)
            if role == "other" or thread.native_id is None:
                continue
            try:
                self._named[thread.native_id] = (role, stat_cpu_seconds(self._tasks / str(thread.native_id) / "stat"))
            except OSError:  # the thread ended meanwhile: its last reading stands
                continue
        totals = dict.fromkeys(ROLES, 0.0)
        for role, seconds in self._named.values():  # ended threads keep their last reading
            totals[role] += seconds
        # The kernel rounds each thread's and the process's time apart, so the difference
        # can dip by a clock tick: held at its highest, the counter never goes down.
        self._other = max(self._other, process - sum(totals.values()))
        totals["other"] = self._other
        return totals
