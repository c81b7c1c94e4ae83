"""What the hostile-input tests throw and where: the valid payloads they
break, hypothesis strategies for JSON values and content types, and a
webhook ``Target`` that checks every answer is a clear 4xx (or 200), never a
5xx, with nothing stored for a rejected request."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st

DATA = Path(__file__).parent / "data"
FIRING = json.loads((DATA / "alertmanager" / "firing.json").read_text(encoding="utf-8"))
GRAFANA = json.loads((DATA / "grafana" / "unified-firing.json").read_text(encoding="utf-8"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/json", "text/plain", "", "application/xml"]
)


class Target:
    """A running app's webhook endpoints and the database behind them."""

    def __init__(self, base_url: str, db: Path) -> None:
        self.base_url = base_url
        self.db = db
        self.http = httpx.Client(base_url=base_url, timeout=10)

    def rows(self) -> int:
        with sqlite3.connect(self.db) as db:
            return int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])

    def post(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return self.http.post(path, content=body, headers=headers)

    def check(self, path: str, body: bytes, content_type: str) -> None:
        before = self.rows()
        response = self.post(path, body, content_type)
        assert response.status_code < 500, (response.status_code, response.text, body[:200])
        if response.status_code != 200:
            assert response.json()["error"], response.text
            assert "\n" not in response.json()["error"]
            assert self.rows() == before  # nothing stored for a rejected request


def mutate(payload: Any, path: list[int], replacement: Any) -> Any:
    """Replace the node that ``path`` walks to (indices mod the children) with ``replacement``."""
    if not path or not isinstance(payload, dict | list) or not payload:
        return replacement
    if isinstance(payload, dict):
        keys = sorted(payload)
        key = keys[path[0] % len(keys)]
        return {**payload, key: mutate(payload[key], path[1:], replacement)}
    index = path[0] % len(payload)
    return [*payload[:index], mutate(payload[index], path[1:], replacement), *payload[index + 1 :]]
