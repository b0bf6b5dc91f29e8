"""Producer compression (TAILOR_KAFKA_COMPRESSION): every producer of ours takes the
setting, faust's included, and each codec round-trips through the real broker."""

from __future__ import annotations

import json
import uuid

import pytest

from consumers.kafka import producer_kwargs
from consumers.producer import TailorProducer
from schemas.settings import Settings
from streams.app import create_app
from tests.harness import Stack, read_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_every_producer_of_ours_takes_the_setting(codec: str) -> None:
    settings = Settings(kafka_compression=codec)  # type: ignore[arg-type]
    expected = None if codec == "none" else codec
    assert producer_kwargs(settings)["compression_type"] == expected
    # faust's producer writes the replies and the table changelogs.
    assert create_app(settings).conf.producer_compression_type == expected


def test_gzip_is_the_default_and_unknown_codecs_are_refused() -> None:
    assert Settings().kafka_compression == "gzip"
    with pytest.raises(ValueError, match="kafka_compression"):
        Settings(kafka_compression="brotli")  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.parametrize("codec", CODECS)
async def test_each_codec_round_trips_through_the_broker(stack: Stack, codec: str) -> None:
    settings = stack.settings.model_copy(update={"kafka_compression": codec})
    topic = f"tailor.test.compression.{codec}"
    # Repetitive JSON, as replies are: what compression is for.
    reason = "similar to 'Relaxed Linen Shirt' you viewed" * 5
    values = [json.dumps({"i": i, "reason": reason}).encode() for i in range(50)]
    async with TailorProducer(settings) as producer:
        for i, value in enumerate(values):
            await producer.send_raw(topic, f"k{i}-{uuid.uuid4().hex[:6]}", value)
    records = await read_topic(settings, topic, 1, lambda rs: len(rs) >= len(values))
    assert [r.value for r in records] == values
