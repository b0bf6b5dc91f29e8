"""RecommendClient: request-reply over Kafka with correlation ids and timeouts.

Requests go to ``tailor.recommend.requests`` keyed by user_id (so they meet that user's
table shard); the worker answers on ``tailor.recommend.replies`` keyed by request_id.
Each client reads every reply partition from the end (no consumer group) and resolves
the future waiting on that request_id.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from consumers.kafka import client_kwargs, producer_kwargs
from schemas import topics
from schemas.events import RecommendReply, RecommendRequest
from schemas.settings import Settings


class RecommendTimeout(TimeoutError):
    def __init__(self, request_id: str, user_id: str, seconds: float) -> None:
        super().__init__(
            f"no reply to recommendation request {request_id} (user {user_id!r}) within "
            f"{seconds:.1f}s: is a Tailor worker running and consuming {topics.RECOMMEND_REQUESTS.name}?"
        )
        self.request_id = request_id


class RecommendClient:
    def __init__(self, settings: Settings, timeout_s: float | None = None) -> None:
        self.settings = settings
        self.timeout_s = timeout_s or settings.request_timeout_s
        kwargs = client_kwargs(settings)
        self._producer = AIOKafkaProducer(**producer_kwargs(settings), acks="all")
        self._consumer = AIOKafkaConsumer(**kwargs, group_id=None, enable_auto_commit=False)
        self._pending: dict[str, asyncio.Future[RecommendReply]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RecommendClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        parts = await self._partitions()
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        # Resolve the end positions now, so no reply sent after start() can be missed.
        for tp in parts:
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read_replies())

    async def _partitions(self) -> list[TopicPartition]:
        name = topics.RECOMMEND_REPLIES.name
        for _ in range(50):
            found = self._consumer.partitions_for_topic(name)
            if found:
                return [TopicPartition(name, p) for p in sorted(found)]
            await self._consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {name} does not exist; run `tailor up` (it creates the topics)")

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for fut in self._pending.values():
            fut.cancel()
        await self._consumer.stop()
        await self._producer.stop()

    async def _read_replies(self) -> None:
        async for msg in self._consumer:
            try:
                reply = RecommendReply.model_validate_json(msg.value or b"")
            except ValidationError:
                continue  # not ours to judge; the worker only writes valid replies
            fut = self._pending.get(reply.request_id)
            if fut and not fut.done():
                fut.set_result(reply)

    async def ask(self, request: RecommendRequest, timeout_s: float | None = None) -> RecommendReply:
        seconds = timeout_s or self.timeout_s
        fut: asyncio.Future[RecommendReply] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = fut
        try:
            await self._producer.send_and_wait(
                topics.RECOMMEND_REQUESTS.name,
                value=request.model_dump_json().encode(),
                key=request.user_id.encode(),
            )
            return await asyncio.wait_for(fut, seconds)
        except TimeoutError as exc:
            raise RecommendTimeout(request.request_id, request.user_id, seconds) from exc
        finally:
            self._pending.pop(request.request_id, None)

    async def recommend(self, user_id: str, k: int = 10, **fields: Any) -> RecommendReply:
        """``await client.recommend("u1", k=10, context="black coat", exclude_seen=True)``."""
        return await self.ask(RecommendRequest(user_id=user_id, k=k, **fields))
