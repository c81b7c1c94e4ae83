"""``POST /alertmanager/{receiver}`` on a real uvicorn server: every status code."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from alertbridge.app import create_app
from alertbridge.testing.server import ServerThread
from tests.ingest_rig import ALERTMANAGER_DATA, FIRING, RESOLVED, TOKEN, FailingStore, ingest_config, post


@pytest.fixture
def server(tmp_path: Path, serve_app: Callable[..., str]) -> tuple[str, FailingStore, io.StringIO]:
    config = ingest_config(
        tmp_path,
        console={"channel": "console"},
        quiet={"channel": "console", "send_resolved": False},
    )
    store = FailingStore(config.store.sqlite_path)
    out = io.StringIO()
    return serve_app(config, out=out, store=store), store, out


def stored_rows(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        return db.execute("SELECT receiver, request_id FROM deliveries ORDER BY id").fetchall()


def test_200_only_after_the_delivery_is_committed(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = post(base_url, "/alertmanager/console", FIRING)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    # Read back through a second connection: the row is on disk when we hear 200.
    assert ("console", answer["request_id"]) in stored_rows(tmp_path)


def test_the_same_notification_again_is_answered_as_a_duplicate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The config's own store, with [delivery] dedup_window (2m by default).
    app = create_app(ingest_config(tmp_path), out=io.StringIO())
    with ServerThread(app) as running, caplog.at_level(logging.INFO, logger="alertbridge"):
        first = post(running.base_url, "/alertmanager/console", FIRING)
        again = post(running.base_url, "/alertmanager/console", FIRING)
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "accepted"
    assert again.json()["status"] == "duplicate"
    assert again.json()["delivery"] == first.json()["delivery"]
    events = [record.getMessage().split(" ")[0] for record in caplog.records]
    assert events.count("webhook_accepted") == 1 and events.count("webhook_duplicate") == 1
    assert len(stored_rows(tmp_path)) == 1


def test_basic_auth_is_accepted_too(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    credentials = base64.b64encode(b"am:pw-123456").decode()
    assert (
        post(base_url, "/alertmanager/console", FIRING, Authorization=f"Basic {credentials}").status_code
        == 200
    )


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {base64.b64encode(b'am:nope').decode()}"],
)
def test_401_without_valid_credentials(server, tmp_path: Path, authorization: str) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = post(base_url, "/alertmanager/console", FIRING, Authorization=authorization)
    assert response.status_code == 401
    assert TOKEN not in response.text
    assert stored_rows(tmp_path) == []


def test_401_comes_before_404_so_receiver_names_do_not_leak(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    assert post(base_url, "/alertmanager/nope", FIRING, Authorization="").status_code == 401


def test_404_unknown_receiver(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = post(base_url, "/alertmanager/nope", FIRING)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (json.dumps({"version": "4"}).encode(), "required field is missing"),
        (FIRING.replace(b'"version": "4"', b'"version": "5"'), "version"),
    ],
)
def test_400_malformed_with_a_one_line_reason(server, tmp_path: Path, body: bytes, reason: str) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = post(base_url, "/alertmanager/console", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert reason in error and "\n" not in error
    assert stored_rows(tmp_path) == []


def test_413_over_max_body_bytes(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = post(base_url, "/alertmanager/console", b" " * (64 * 1024 + 1))
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]

    # Also when the client does not declare a length (chunked upload).
    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b" " * 1024

    chunked = httpx.post(
        f"{base_url}/alertmanager/console",
        content=chunks(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert chunked.status_code == 413
    assert stored_rows(tmp_path) == []


def test_415_wrong_content_type(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = post(
        base_url, "/alertmanager/console", FIRING, **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    # An empty Content-Type is not JSON either (it does not default to JSON the way an absent one does).
    assert post(base_url, "/alertmanager/console", FIRING, **{"Content-Type": ""}).status_code == 415


def test_a_client_gone_mid_body_stores_nothing(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(
            b"POST /alertmanager/console HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(FIRING)}\r\n\r\n".encode()
            + FIRING[:100]
        )
    deadline = time.monotonic() + 10
    counted = 'alertbridge_webhooks_received_total{outcome="incomplete",receiver="console",source="alertmanager"} 1.0'
    while counted not in httpx.get(f"{base_url}/metrics", timeout=10).text:
        assert time.monotonic() < deadline, "the cut-off webhook was never counted as incomplete"
        time.sleep(0.05)
    assert stored_rows(tmp_path) == []
    assert post(base_url, "/alertmanager/console", FIRING).status_code == 200


def test_503_when_the_store_cannot_commit_then_recovers(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, store, _ = server
    store.failing = True
    response = post(base_url, "/alertmanager/console", FIRING)
    assert response.status_code == 503
    assert stored_rows(tmp_path) == []
    store.failing = False
    assert post(base_url, "/alertmanager/console", FIRING).status_code == 200


def test_send_resolved_false_drops_resolved_only_groups(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = post(base_url, "/alertmanager/quiet", RESOLVED)
    assert response.status_code == 200
    assert response.json()["status"] == "dropped"
    assert stored_rows(tmp_path) == []
    # A mixed group keeps only its firing alerts.
    mixed = post(
        base_url, "/alertmanager/quiet", (ALERTMANAGER_DATA / "partially-resolved.json").read_bytes()
    )
    assert mixed.status_code == 200 and mixed.json()["status"] == "accepted"


def test_only_post_is_allowed(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    assert httpx.get(f"{base_url}/alertmanager/console", timeout=10).status_code == 405


def test_accepted_notification_reaches_the_console(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, out = server
    assert post(base_url, "/alertmanager/console", FIRING).status_code == 200
    deadline = time.monotonic() + 10
    while "E2EHighLatency" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    printed = out.getvalue()
    assert "E2EHighLatency" in printed and "api-1:9100" in printed and "api-2:9100" in printed
