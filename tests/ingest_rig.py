"""What the webhook-ingest tests share: Alertmanager payloads, the webhook
token and config, a store whose commits can be made to fail, and a POST.

The running app they post to comes from conftest's ``serve_app``.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from alertbridge.config import Config
from alertbridge.errors import StoreError
from alertbridge.stores import NewDelivery
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from tests.config_builder import build_config

ALERTMANAGER_DATA = Path(__file__).parent / "data" / "alertmanager"
FIRING = (ALERTMANAGER_DATA / "firing.json").read_bytes()
RESOLVED = (ALERTMANAGER_DATA / "resolved.json").read_bytes()
TOKEN = "webhook-token-0123456789"


def ingest_config(tmp_path: Path, **receivers: dict[str, object]) -> Config:
    """Bearer and basic auth, a 64 KiB body limit, ``receivers`` (one console receiver by default)."""
    return build_config(
        tmp_path / "outbox.db",
        server={"max_body_bytes": 64 * 1024},
        webhook_auth={"bearer_token": TOKEN, "basic_auth": {"username": "am", "password": "pw-123456"}},
        receivers=receivers or {"console": {"channel": "console"}},
    )


class FailingStore(SqliteOutboxStore):
    """A real store whose commits can be made to fail, as a full or read-only disk does."""

    failing = False
    # What a failing commit raises; a test of an unexpected failure sets another.
    error: Exception = StoreError("database or disk is full")

    async def enqueue(self, delivery: NewDelivery) -> int:
        if self.failing:
            raise self.error
        return await super().enqueue(delivery)


def post(base_url: str, path: str, body: bytes, **headers: str) -> httpx.Response:
    """POST ``body`` as JSON with the webhook token, unless ``headers`` say otherwise."""
    headers.setdefault("Authorization", f"Bearer {TOKEN}")
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(f"{base_url}{path}", content=body, headers=headers, timeout=10)
