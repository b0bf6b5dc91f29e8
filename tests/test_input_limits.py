"""Input limits and config hygiene, at unit level (no broker): every bad input event is a
dead letter with a reason, every free-text field is bounded, k is bounded, Kafka security
settings reach both aiokafka and faust, and secrets never show in the settings' repr."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, SecretStr

from schemas.events import DeadLetter, Interaction, ProductCreated, RecommendRequest, ReenrichRequest
from schemas.limits import (
    MAX_ATTR_KEY_CHARS,
    MAX_ATTR_LIST,
    MAX_ATTR_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_CONTEXT_CHARS,
    MAX_DEADLETTER_PAYLOAD_BYTES,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_K,
    MAX_TITLE_CHARS,
)
from schemas.settings import Settings
from streams.deadletter import decode
from tests.bad_events import INTERACTIONS, PRODUCTS, REASONS, REQUESTS, BadEvent, any_bad_event
from tests.factories import product

MODELS: dict[str, type[BaseModel]] = {PRODUCTS: ProductCreated, INTERACTIONS: Interaction, REQUESTS: RecommendRequest}


# --- fuzzed bad events -----------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(any_bad_event())
def test_every_fuzzed_bad_event_is_a_dead_letter_with_a_reason(bad: BadEvent) -> None:
    out = decode(bad.value, MODELS[bad.topic], bad.topic, 1, 42, bad.key)
    if bad.expect == "bad_key":  # valid on its own; the interaction agent rejects the key
        assert isinstance(out, Interaction) and out.user_id.encode() != bad.key
        return
    assert isinstance(out, DeadLetter), f"{bad.kind}: decoded as a valid {type(out).__name__}"
    assert out.error in REASONS and out.detail, bad.kind
    assert out.source_topic == bad.topic and out.partition == 1 and out.offset == 42
    # The original bytes, whole unless the letter would not fit in one Kafka message.
    assert base64.b64decode(out.payload_b64) == bad.value[:MAX_DEADLETTER_PAYLOAD_BYTES]
    assert (len(bad.value) > MAX_DEADLETTER_PAYLOAD_BYTES) == ("payload: the first" in out.detail)
    assert len(out.model_dump_json()) < 1_000_000  # sendable under Kafka's default 1 MiB limit


# --- every free-text field is bounded --------------------------------------------------


def _unbounded(schema: dict[str, Any], defs: dict[str, Any], path: str = "") -> list[str]:
    """JSON-schema nodes that accept unbounded input: strings without maxLength, arrays
    without maxItems, maps without maxProperties / bounded keys."""
    if "$ref" in schema:
        return _unbounded(defs[schema["$ref"].split("/")[-1]], defs, path)
    found: list[str] = []
    for option in schema.get("anyOf", []):
        found += _unbounded(option, defs, path)
    kind = schema.get("type")
    if kind == "string" and "format" not in schema and "enum" not in schema and "const" not in schema:
        if "maxLength" not in schema:
            found.append(f"{path or '<root>'}: string without maxLength")
    if kind == "array":
        if "maxItems" not in schema:
            found.append(f"{path}: array without maxItems")
        found += _unbounded(schema.get("items", {}), defs, f"{path}[]")
    if kind == "object":
        for name, sub in schema.get("properties", {}).items():
            found += _unbounded(sub, defs, f"{path}.{name}" if path else name)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in schema or "maxLength" not in schema.get("propertyNames", {}):
                found.append(f"{path}: map without maxProperties / bounded keys")
            found += _unbounded(extra, defs, f"{path}.*")
    return found


@pytest.mark.parametrize("model", [ProductCreated, Interaction, RecommendRequest, ReenrichRequest])
def test_every_free_text_field_and_collection_of_an_input_event_is_bounded(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    assert _unbounded(schema, schema.get("$defs", {})) == []


def _product_doc() -> dict[str, Any]:
    return json.loads(product(1, "coat", re={"fabric.feature": "Wool_Normal"}).model_dump_json())


def _at(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = doc
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return doc


def _text(n: int) -> str:
    return ("abcdefghij" * (n // 10 + 1))[:n]


CLOTHES = ("attributes", "clothes")
RFV = ("attributes", "reinforced_feature_value")
# (topic, field path, limit, value of a given size): one case per free-text field or
# collection. ``make(n)`` builds the value whose size is n; n = limit passes, limit + 1 not.
FIELDS: list[tuple[str, tuple[str, ...], int, Any]] = [
    (PRODUCTS, ("event_id",), MAX_ID_CHARS, _text),
    (PRODUCTS, ("title",), MAX_TITLE_CHARS, _text),
    (PRODUCTS, ("description",), MAX_DESCRIPTION_CHARS, _text),
    (PRODUCTS, (*CLOTHES, "color"), MAX_ATTR_VALUE_CHARS, _text),
    (PRODUCTS, (*CLOTHES, "material"), MAX_ATTR_LIST, lambda n: ["Wool"] * n),
    (PRODUCTS, (*CLOTHES, "fit"), MAX_ATTRIBUTES, lambda n: {f"k{i}": "v" for i in range(n)}),
    (PRODUCTS, (*RFV, "fabric.feature"), MAX_ATTR_VALUE_CHARS, _text),
    (PRODUCTS, (*RFV, "structural", "geometry"), MAX_ATTR_VALUE_CHARS, _text),
    (PRODUCTS, (*RFV, "structural", "tags"), MAX_ATTR_LIST, lambda n: ["x"] * n),
    (INTERACTIONS, ("event_id",), MAX_ID_CHARS, _text),
    (INTERACTIONS, ("user_id",), MAX_ID_CHARS, _text),
    (REQUESTS, ("event_id",), MAX_ID_CHARS, _text),
    (REQUESTS, ("request_id",), MAX_ID_CHARS, _text),
    (REQUESTS, ("user_id",), MAX_ID_CHARS, _text),
    (REQUESTS, ("context",), MAX_CONTEXT_CHARS, _text),
    (REQUESTS, ("filters", "coarse"), 64, _text),
    (REQUESTS, ("filters", "fine"), 64, _text),
    (REQUESTS, ("filters", "gender"), 16, _text),
]


def _base(topic: str) -> dict[str, Any]:
    if topic == PRODUCTS:
        return _product_doc()
    if topic == INTERACTIONS:
        return json.loads(Interaction(user_id="u1", product_id=1).model_dump_json())
    return json.loads(RecommendRequest(user_id="u1").model_dump_json())


@pytest.mark.parametrize(
    ("topic", "path", "limit", "make"), FIELDS, ids=lambda v: ".".join(v) if isinstance(v, tuple) else None
)
def test_oversize_field_is_dead_lettered_with_the_field_named(
    topic: str, path: tuple[str, ...], limit: int, make: Any
) -> None:
    model = MODELS[topic]
    at_limit = json.dumps(_at(_base(topic), path, make(limit))).encode()
    assert isinstance(decode(at_limit, model, topic), model)  # the documented bound, not lower
    over = json.dumps(_at(_base(topic), path, make(limit + 1))).encode()
    letter = decode(over, model, topic, 0, 7, b"k")
    assert isinstance(letter, DeadLetter) and letter.error == "schema"
    # The reason names the field (for a nested attribute: at least its parent; union
    # members each report an error and the detail keeps the first five).
    assert path[-1] in letter.detail or path[-2] in letter.detail, letter.detail
    assert base64.b64decode(letter.payload_b64) == over


def test_oversize_attribute_keys_are_dead_lettered() -> None:
    for where in (CLOTHES, RFV):
        ok = json.dumps(_at(_product_doc(), (*where, "k" * MAX_ATTR_KEY_CHARS), "v")).encode()
        assert isinstance(decode(ok, ProductCreated, PRODUCTS), ProductCreated)
        bad = json.dumps(_at(_product_doc(), (*where, "k" * (MAX_ATTR_KEY_CHARS + 1)), "v")).encode()
        letter = decode(bad, ProductCreated, PRODUCTS)
        assert isinstance(letter, DeadLetter) and letter.error == "schema" and where[-1] in letter.detail


@pytest.mark.parametrize(("k", "ok"), [(1, True), (MAX_K, True), (0, False), (MAX_K + 1, False), (10**9, False)])
def test_k_is_bounded(k: int, ok: bool) -> None:
    raw = json.dumps({"user_id": "u1", "k": k}).encode()
    out = decode(raw, RecommendRequest, REQUESTS)
    if ok:
        assert isinstance(out, RecommendRequest) and out.k == k
    else:
        assert isinstance(out, DeadLetter) and out.error == "schema" and out.detail.startswith("RecommendRequest: k:")


# --- Kafka security settings reach aiokafka and faust alike ------------------------------

SECURITY = [
    {},
    {"kafka_security_protocol": "SSL"},
    {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "shop",
        "kafka_sasl_password": "pw-plain",
    },
    {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "shop",
        "kafka_sasl_password": "pw-scram",
    },
    # Half-set configurations: both clients must still do the same thing.
    {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "shop", "kafka_sasl_password": "pw-unused"},
    {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "shop", "kafka_sasl_password": "pw-default"},
]


def _effective(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What an aiokafka client does with these kwargs (SASL fields count only under SASL_*;
    its default mechanism is PLAIN)."""
    protocol = kwargs["security_protocol"]
    out = {"protocol": protocol, "tls": isinstance(kwargs.get("ssl_context"), ssl.SSLContext)}
    if protocol.startswith("SASL_"):
        out |= {
            "mechanism": kwargs.get("sasl_mechanism") or "PLAIN",
            "username": kwargs.get("sasl_plain_username"),
            "password": kwargs.get("sasl_plain_password"),
        }
    return out


@pytest.mark.parametrize("security", SECURITY, ids=lambda s: "+".join(k.split("_")[-1] for k in s) or "default")
def test_security_settings_pass_through_to_aiokafka_and_faust(security: dict[str, str]) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from consumers.kafka import client_kwargs
    from streams.app import create_app

    s = Settings(kafka_bootstrap="broker:9093", **security)
    ours = client_kwargs(s)
    protocol = security.get("kafka_security_protocol", "PLAINTEXT")
    assert _effective(ours) == {"protocol": protocol, "tls": "SSL" in protocol} | (
        {
            "mechanism": security.get("kafka_sasl_mechanism", "PLAIN"),
            "username": "shop",
            "password": security["kafka_sasl_password"],
        }
        if protocol.startswith("SASL_")
        else {}
    )
    assert ours["bootstrap_servers"] == "broker:9093"

    app = create_app(s)
    assert str(app.conf.broker[0]) == "kafka://broker:9093"
    # What faust's consumer thread and its producer hand to aiokafka.
    for theirs in (
        dict(credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)),
        dict(app.producer._settings_auth()),  # noqa: SLF001 - the producer's own auth kwargs
    ):
        assert _effective(theirs) == _effective(ours)


TLS = Path(__file__).parent / "tls"


def test_tls_files_reach_aiokafka_and_faust() -> None:
    """A private CA replaces the system's, and a client certificate (its key behind a
    password) is loaded, in the one SSL context every aiokafka client and faust use."""
    from consumers.kafka import client_kwargs
    from streams.app import create_app

    s = Settings(
        kafka_bootstrap="broker:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="shop",
        kafka_sasl_password="pw",
        kafka_ssl_cafile=TLS / "ca.pem",
        kafka_ssl_certfile=TLS / "client.pem",
        kafka_ssl_keyfile=TLS / "client.key",
        kafka_ssl_key_password="keypw",
    )
    ctx = client_kwargs(s)["ssl_context"]
    subjects = [dict(pair[0] for pair in ca["subject"]) for ca in ctx.get_ca_certs()]
    assert subjects == [{"commonName": "tailor-test-ca"}]  # only the configured CA
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    app = create_app(s)
    theirs = app.conf.broker_credentials.ssl_context
    assert [dict(p[0] for p in ca["subject"]) for ca in theirs.get_ca_certs()] == subjects
    with pytest.raises(ssl.SSLError):  # the key's password is really used
        client_kwargs(s.model_copy(update={"kafka_ssl_key_password": SecretStr("wrong")}))
    assert "keypw" not in repr(s) and "keypw" not in s.model_dump_json()


def test_secrets_stay_out_of_settings_repr_and_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "TAILOR_KAFKA_SASL_PASSWORD": "kafka-s3cret-pw",
        "TAILOR_OPENAI_API_KEY": "sk-openai-s3cret",
        "TAILOR_MILVUS_TOKEN": "root:milvus-s3cret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TAILOR_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TAILOR_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("TAILOR_KAFKA_SASL_USERNAME", "shop")
    s = Settings()
    assert s.kafka_sasl_password and s.kafka_sasl_password.get_secret_value() == "kafka-s3cret-pw"
    from streams.app import create_app

    shown = [repr(s), str(s), s.model_dump_json(), str(s.model_dump()), repr(create_app(s).conf.broker_credentials)]
    for text in shown:
        for value in secrets.values():
            assert value not in text


def test_worker_log_records_mask_the_configured_secrets() -> None:
    import io
    import logging

    from streams.worker import redact_secrets

    s = Settings(
        kafka_sasl_password="kafka-s3cret-pw", openai_api_key="sk-openai-s3cret", milvus_token="root:mv-s3cret"
    )
    before = logging.getLogRecordFactory()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger("some.library")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        redact_secrets(s)
        log.debug("SaslAuthenticateRequest(sasl_auth_bytes=%r)", b"\x00shop\x00kafka-s3cret-pw")
        log.warning("calling with Authorization: Bearer %s", "sk-openai-s3cret")
        log.info("milvus token mv-s3cret rejected")
        try:
            raise RuntimeError("token root:mv-s3cret refused")
        except RuntimeError:
            log.exception("connect failed")
        text = out.getvalue()
        assert "s3cret" not in text and text.count("***") >= 4
        assert "Bearer ***" in text and "x00shop\\x00***" in text and "RuntimeError: token ***" in text
    finally:
        logging.setLogRecordFactory(before)
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
