"""Stored JSON is written by orjson as the json module wrote it (alertbridge.stores.codec.dumps):
values compared as text in queries (a backlog's recipients) match rows written before."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from alertbridge.stores.codec import dumps, loads

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(value=values)
def test_dumps_writes_what_json_wrote(value: Any) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@given(value=values)
def test_loads_reads_it_back(value: Any) -> None:
    text = dumps(value)
    if any("\ud800" <= c <= "\udfff" for c in text):
        return  # lone surrogates are refused by enqueue before they are stored
    assert loads(text) == value
