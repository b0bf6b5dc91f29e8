"""Hypothesis strategies for invalid input events, one per input topic.

Every value drawn here must be dead-lettered by the worker: ``tests/test_input_limits.py``
checks that against ``streams.deadletter.decode`` with ``@given`` (so a strategy that could
produce a valid event fails there first), and ``tests/test_failures.py`` publishes a
fixed-seed sample of the same strategies to a live worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from schemas import topics
from schemas.events import Interaction, RecommendRequest
from schemas.limits import (
    MAX_ATTR_KEY_CHARS,
    MAX_ATTR_LIST,
    MAX_ATTR_NUMBER,
    MAX_ATTR_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_CONTEXT_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_K,
    MAX_MESSAGE_BYTES,
    MAX_PRICE,
    MAX_TITLE_CHARS,
)
from tests.factories import product

PRODUCTS, INTERACTIONS, REQUESTS = (
    topics.PRODUCTS_CREATED.name,
    topics.INTERACTIONS.name,
    topics.RECOMMEND_REQUESTS.name,
)
INPUT_TOPICS = (PRODUCTS, INTERACTIONS, REQUESTS)
REASONS = {"empty", "too_large", "invalid_json", "schema", "bad_key"}


@dataclass(frozen=True)
class BadEvent:
    topic: str
    key: bytes | None
    value: bytes
    kind: str  # which mutation made it, for failure messages
    # "bad_key": a valid Interaction under another message key, dead-lettered by the agent
    # (the table shard is chosen by the key), not by decode.
    expect: str | None = None


# Characters that survive ``strip()`` (ids strip whitespace): no separators, no controls,
# no surrogates (not encodable as UTF-8).
_solid = st.characters(blacklist_categories=("Z", "Cc", "Cs"))
_word = st.text(alphabet=_solid, min_size=1, max_size=6)


def oversize(limit: int, extra: int = 40) -> st.SearchStrategy[str]:
    """A string of ``limit + 1 .. limit + extra`` non-blank characters."""
    return st.builds(lambda w, n: (w * n)[:n], _word, st.integers(limit + 1, limit + extra))


def _not_a_string() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.dictionaries(_word, st.integers(), max_size=2))


def _not_an_int() -> st.SearchStrategy[Any]:
    # pydantic's lax mode takes "12", 3.0 and True as ints: none of those here.
    return st.one_of(
        st.none(),
        st.text(alphabet="abcxyz", min_size=1, max_size=5),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not float(f).is_integer()),
        st.lists(st.integers(), max_size=2),
    )


def _bad_time() -> st.SearchStrategy[Any]:
    return st.one_of(st.text(alphabet="abcxyz ", min_size=1, max_size=10), st.lists(st.integers(), max_size=2))


# --- the valid events the mutations start from --------------------------------------------


def _valid_product(pid: int) -> dict[str, Any]:
    return json.loads(product(pid, "coat", re={"fabric.feature": "Wool_Normal"}).model_dump_json())


def _valid_interaction(user: str, pid: int) -> dict[str, Any]:
    return json.loads(Interaction(user_id=user, product_id=pid).model_dump_json())


def _valid_request(user: str) -> dict[str, Any]:
    return json.loads(RecommendRequest(user_id=user, k=5, context="black coat").model_dump_json())


_pids = st.integers(0, 10**9)
_users = st.text(alphabet="abcdefgh0123456789-", min_size=1, max_size=12).map(lambda s: f"u-fz-{s}")


def _set(path: tuple[str, ...], value: Any):
    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return doc

    return apply


def _drop(path: tuple[str, ...]):
    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        node = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
        return doc

    return apply


def _mutations(topic: str) -> st.SearchStrategy[tuple[str, Any]]:
    """(name, doc -> doc) pairs, each of which makes a valid event invalid."""
    common = [
        st.tuples(st.just("oversize event_id"), oversize(MAX_ID_CHARS).map(lambda v: _set(("event_id",), v))),
        st.tuples(st.just("bad event_time"), _bad_time().map(lambda v: _set(("event_time",), v))),
        st.tuples(st.just("empty event_id"), st.sampled_from(["", "   "]).map(lambda v: _set(("event_id",), v))),
    ]
    if topic == PRODUCTS:
        clothes = ("attributes", "clothes")
        rfv = ("attributes", "reinforced_feature_value")
        specific = [
            st.tuples(st.just("missing " + f), st.just(_drop((f,)))) for f in ("product_id", "title", "attributes")
        ] + [
            st.tuples(st.just("missing category"), st.just(_drop((*clothes, "category")))),
            st.tuples(
                st.just("empty category"),
                st.sampled_from(["", " ", [], [""]]).map(lambda v: _set((*clothes, "category"), v)),
            ),
            st.tuples(st.just("product_id type"), _not_an_int().map(lambda v: _set(("product_id",), v))),
            st.tuples(
                st.just("product_id range"),
                st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63, max_value=2**80)).map(
                    lambda v: _set(("product_id",), v)
                ),
            ),
            st.tuples(st.just("title type"), _not_a_string().map(lambda v: _set(("title",), v))),
            st.tuples(st.just("empty title"), st.just(_set(("title",), ""))),
            st.tuples(st.just("oversize title"), oversize(MAX_TITLE_CHARS).map(lambda v: _set(("title",), v))),
            st.tuples(
                st.just("oversize description"),
                oversize(MAX_DESCRIPTION_CHARS).map(lambda v: _set(("description",), v)),
            ),
            st.tuples(
                st.just("price"),
                st.one_of(
                    st.floats(max_value=-0.01, allow_infinity=False, allow_nan=False),
                    st.floats(min_value=MAX_PRICE + 1, allow_infinity=False, allow_nan=False),
                    st.just("cheap"),
                ).map(lambda v: _set(("price",), v)),
            ),
            st.tuples(
                st.just("attributes type"),
                st.one_of(st.just("coat"), st.lists(st.integers(), max_size=2)).map(lambda v: _set(("attributes",), v)),
            ),
            st.tuples(
                st.just("oversize std value"),
                oversize(MAX_ATTR_VALUE_CHARS).map(lambda v: _set((*clothes, "color"), v)),
            ),
            st.tuples(
                st.just("oversize re value"),
                oversize(MAX_ATTR_VALUE_CHARS).map(lambda v: _set((*rfv, "fabric.feature"), v)),
            ),
            st.tuples(
                st.just("oversize nested re value"),
                oversize(MAX_ATTR_VALUE_CHARS).map(lambda v: _set((*rfv, "structural"), {"geometry": v})),
            ),
            st.tuples(st.just("oversize attr key"), oversize(MAX_ATTR_KEY_CHARS).map(lambda k: _set((*rfv, k), "x"))),
            st.tuples(
                st.just("too many attrs"),
                st.integers(MAX_ATTRIBUTES + 1, MAX_ATTRIBUTES + 5).map(
                    lambda n: _set(
                        (rfv[0],),
                        {
                            "clothes": {"category": "01outer_01coat"},
                            "reinforced_feature_value": {f"k{i}": "v" for i in range(n)},
                        },
                    )
                ),
            ),
            st.tuples(
                st.just("attr list too long"),
                st.integers(MAX_ATTR_LIST + 1, MAX_ATTR_LIST + 5).map(
                    lambda n: _set((*clothes, "color"), ["Black"] * n)
                ),
            ),
            st.tuples(
                st.just("attr number range"),
                st.one_of(
                    st.integers(min_value=MAX_ATTR_NUMBER + 1),
                    st.integers(max_value=-MAX_ATTR_NUMBER - 1),
                    st.floats(min_value=MAX_ATTR_NUMBER * 1.01),
                    st.sampled_from(["9" * (MAX_ATTR_VALUE_CHARS + 1), "-" + "9" * (MAX_ATTR_VALUE_CHARS + 9)]),
                ).map(lambda v: _set((*rfv, "fabric.feature"), v)),
            ),
            st.tuples(
                st.just("attr value type"),
                st.sampled_from([None, [[1]], {"a": {"b": 1}}]).map(lambda v: _set((*clothes, "color"), v)),
            ),
        ]
    elif topic == INTERACTIONS:
        specific = [st.tuples(st.just("missing " + f), st.just(_drop((f,)))) for f in ("user_id", "product_id")] + [
            st.tuples(st.just("oversize user_id"), oversize(MAX_ID_CHARS).map(lambda v: _set(("user_id",), v))),
            st.tuples(st.just("blank user_id"), st.sampled_from(["", "  ", "\t"]).map(lambda v: _set(("user_id",), v))),
            st.tuples(st.just("user_id type"), _not_a_string().map(lambda v: _set(("user_id",), v))),
            st.tuples(st.just("product_id type"), _not_an_int().map(lambda v: _set(("product_id",), v))),
            st.tuples(st.just("product_id range"), st.integers(max_value=-1).map(lambda v: _set(("product_id",), v))),
            st.tuples(
                st.just("kind"),
                st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
                .filter(lambda k: k not in ("click", "cart", "purchase"))
                .map(lambda v: _set(("kind",), v)),
            ),
            st.tuples(st.just("bad ts"), _bad_time().map(lambda v: _set(("ts",), v))),
        ]
    else:
        specific = [
            st.tuples(st.just("missing user_id"), st.just(_drop(("user_id",)))),
            st.tuples(st.just("oversize user_id"), oversize(MAX_ID_CHARS).map(lambda v: _set(("user_id",), v))),
            st.tuples(st.just("oversize request_id"), oversize(MAX_ID_CHARS).map(lambda v: _set(("request_id",), v))),
            st.tuples(st.just("request_id type"), _not_a_string().map(lambda v: _set(("request_id",), v))),
            st.tuples(
                st.just("k range"),
                st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_K + 1)).map(lambda v: _set(("k",), v)),
            ),
            st.tuples(st.just("k type"), _not_an_int().map(lambda v: _set(("k",), v))),
            st.tuples(st.just("oversize context"), oversize(MAX_CONTEXT_CHARS).map(lambda v: _set(("context",), v))),
            st.tuples(
                st.just("context type"), st.lists(st.integers(), max_size=2).map(lambda v: _set(("context",), v))
            ),
            st.tuples(st.just("unknown filter"), st.just(_set(("filters",), {"colour": "red"}))),
            st.tuples(
                st.just("oversize filter"),
                st.sampled_from([("coarse", 64), ("fine", 64), ("gender", 16)]).flatmap(
                    lambda f: oversize(f[1]).map(lambda v: _set(("filters",), {f[0]: v}))
                ),
            ),
            st.tuples(
                st.just("profile range"),
                st.floats(min_value=251, max_value=1e6).map(lambda v: _set(("profile",), {"height_cm": v})),
            ),
            st.tuples(
                st.just("diversity_lambda"),
                st.floats(min_value=1.01, max_value=100).map(lambda v: _set(("diversity_lambda",), v)),
            ),
        ]
    return st.one_of(*common, *specific)


@st.composite
def _mutated(draw: st.DrawFn, topic: str) -> BadEvent:
    user = draw(_users)
    if topic == PRODUCTS:
        doc = _valid_product(draw(_pids))
        key = str(doc["product_id"]).encode()
    elif topic == INTERACTIONS:
        doc = _valid_interaction(user, draw(_pids))
        key = user.encode()
    else:
        doc = _valid_request(user)
        key = user.encode()
    name, mutate = draw(_mutations(topic))
    return BadEvent(topic, key, json.dumps(mutate(doc)).encode(), name)


@st.composite
def _garbage(draw: st.DrawFn, topic: str) -> BadEvent:
    """Bytes that are not a JSON object of the right shape."""
    kind, value = draw(
        st.one_of(
            st.tuples(st.just("random bytes"), st.binary(max_size=64)),
            st.tuples(st.just("not utf-8"), st.binary(min_size=1, max_size=16).map(lambda b: b'{"a": "\xff' + b)),
            st.tuples(
                st.just("json non-object"),
                st.one_of(
                    st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3), st.none(), st.booleans()
                ).map(lambda v: json.dumps(v).encode()),
            ),
            st.tuples(st.just("empty object"), st.just(b"{}")),
            st.tuples(
                st.just("truncated json"),
                st.integers(1, 60).map(lambda cut: json.dumps(_valid_request("u-trunc")).encode()[:-cut]),
            ),
            # The JSON parser's own limits: nesting past the recursion limit, and integer
            # literals longer than Python's int-from-string limit (4300 digits).
            st.tuples(st.just("deep nesting"), st.integers(2_000, 60_000).map(lambda n: b"[" * n + b"]" * n)),
            st.tuples(
                st.just("huge int"), st.integers(4_301, 20_000).map(lambda n: b'{"product_id": ' + b"7" * n + b"}")
            ),
            # Over the per-message limit (but under the broker's 1 MiB).
            st.tuples(
                st.just("too large"),
                st.integers(MAX_MESSAGE_BYTES + 1, 900_000).map(lambda n: b'{"pad": "' + b"x" * n + b'"}'),
            ),
        )
    )
    key = draw(
        st.one_of(
            st.none(),
            st.binary(max_size=16),
            _users.map(str.encode),
            st.integers(2_000, 60_000).map(lambda n: b"k" * n),  # keys have no limit of their own
        )
    )
    return BadEvent(topic, key, value, kind)


@st.composite
def _wrong_key(draw: st.DrawFn) -> BadEvent:
    user = draw(_users)
    doc = _valid_interaction(user, draw(_pids))
    return BadEvent(INTERACTIONS, b"not-" + user.encode(), json.dumps(doc).encode(), "wrong key", expect="bad_key")


def bad_events(topic: str) -> st.SearchStrategy[BadEvent]:
    options = [_mutated(topic), _garbage(topic)]
    if topic == INTERACTIONS:
        options.append(_wrong_key())
    return st.one_of(*options)


def any_bad_event() -> st.SearchStrategy[BadEvent]:
    return st.sampled_from(INPUT_TOPICS).flatmap(bad_events)


def corpus(per_topic: int) -> list[BadEvent]:
    """A fixed sample of ``bad_events`` for each input topic, drawn by hypothesis itself
    (``derandomize``: the same corpus on every run, no example database)."""
    drawn: list[BadEvent] = []
    for topic in INPUT_TOPICS:

        @settings(
            max_examples=per_topic,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            deadline=None,
        )
        @given(bad_events(topic))
        def collect(event: BadEvent) -> None:
            drawn.append(event)

        collect()
    return drawn
