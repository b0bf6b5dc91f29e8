"""Housekeeping after an item-space swap, against a real embedded Milvus: the live space
and the one it replaced stay, older spaces' collections are dropped."""

from __future__ import annotations

import time

from streams.model_swap import _drop_older_spaces
from streams.services import open_store
from tests.harness import Stack


async def test_a_swap_keeps_the_live_and_the_replaced_space_and_drops_older_ones(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"collection": f"spaces{time.time_ns()}"})
    stores = {space: open_store(settings, space) for space in ("v1", "v2", "v3")}
    other = open_store(stack.settings.model_copy(update={"collection": f"other{time.time_ns()}"}), "v1")
    try:
        for s in (*stores.values(), other):
            s.ensure_collection()
        await _drop_older_spaces(settings, stores["v3"], stores["v2"].collection)
        assert [stores[v].exists() for v in ("v1", "v2", "v3")] == [False, True, True]
        assert other.exists()  # another deployment's collections are not ours to drop
        await _drop_older_spaces(settings, stores["v3"], stores["v2"].collection)  # idempotent
        assert stores["v3"].exists() and stores["v2"].exists()
    finally:
        for s in (*stores.values(), other):
            s.close()
