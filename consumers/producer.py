"""TailorProducer: what a shop uses to publish product and interaction events."""

from __future__ import annotations

from types import TracebackType

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from consumers.kafka import producer_kwargs
from schemas import topics
from schemas.events import Interaction, ProductCreated
from schemas.settings import Settings


class TailorProducer:
    def __init__(self, settings: Settings) -> None:
        self._producer = AIOKafkaProducer(**producer_kwargs(settings), acks="all", linger_ms=5)

    async def __aenter__(self) -> TailorProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self._producer.stop()

    async def send_raw(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        """Publish bytes as they are (also used to test bad input handling)."""
        raw_key = key.encode() if isinstance(key, str) else key
        await self._producer.send_and_wait(topic, value=value, key=raw_key)

    async def _send_model(self, topic: str, key: str, event: BaseModel) -> None:
        await self.send_raw(topic, key, event.model_dump_json().encode())

    async def publish_product(self, product: ProductCreated) -> None:
        await self._send_model(topics.PRODUCTS_CREATED.name, str(product.product_id), product)

    async def publish_interaction(self, interaction: Interaction) -> None:
        await self._send_model(topics.INTERACTIONS.name, interaction.user_id, interaction)

    async def flush(self) -> None:
        await self._producer.flush()
