"""``POST|PUT /grafana/{receiver}`` on a real uvicorn server: status codes, HMAC, rendered output."""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from alertbridge.config import Config
from alertbridge.sources.grafana_signature import sign
from tests.config_builder import build_config
from tests.ingest_rig import TOKEN, FailingStore

DATA = Path(__file__).parent / "data" / "grafana"
AM_DATA = Path(__file__).parent / "data" / "alertmanager"
FIRING = (DATA / "unified-firing.json").read_bytes()
RESOLVED = (DATA / "unified-resolved.json").read_bytes()
MULTI = (DATA / "unified-multi.json").read_bytes()
LEGACY_ALERTING = (DATA / "legacy-alerting.json").read_bytes()
LEGACY_OK = (DATA / "legacy-ok.json").read_bytes()
AM_FIRING = (AM_DATA / "firing.json").read_bytes()
SECRET = "grafana-hmac-secret-abcdef"


def make_config(tmp_path: Path) -> Config:
    return build_config(
        tmp_path / "outbox.db",
        server={"max_body_bytes": 64 * 1024},
        webhook_auth={"bearer_token": TOKEN},
        receivers={
            "console": {"channel": "console"},  # zh markdown
            "english": {"channel": "console", "language": "en", "msgtype": "text"},
            "signed": {"channel": "console", "grafana_hmac_secret": SECRET},
            "quiet": {"channel": "console", "send_resolved": False},
        },
    )


@pytest.fixture
def server(tmp_path: Path, serve_app: Callable[..., str]) -> tuple[str, FailingStore, io.StringIO]:
    config = make_config(tmp_path)
    store = FailingStore(config.store.sqlite_path)
    out = io.StringIO()
    return serve_app(config, out=out, store=store), store, out


def send(base_url: str, path: str, body: bytes, method: str = "POST", **headers: str) -> httpx.Response:
    headers.setdefault("Authorization", f"Bearer {TOKEN}")
    headers.setdefault("Content-Type", "application/json")
    return httpx.request(method, f"{base_url}{path}", content=body, headers=headers, timeout=10)


def stored_rows(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        return db.execute("SELECT receiver, request_id FROM deliveries ORDER BY id").fetchall()


def wait_for(out: io.StringIO, *needles: str) -> str:
    deadline = time.monotonic() + 10
    while not all(n in out.getvalue() for n in needles) and time.monotonic() < deadline:
        time.sleep(0.05)
    return out.getvalue()


def signed_headers(
    body: bytes, timestamp: int | None = None, header: str = "X-Grafana-Alerting-Signature"
) -> dict[str, str]:
    if timestamp is None:
        return {header: sign(SECRET, body)}
    return {header: sign(SECRET, body, str(timestamp)), "X-Grafana-Alerting-Timestamp": str(timestamp)}


# --- the same contract as /alertmanager ------------------------------------


@pytest.mark.parametrize("body", [FIRING, MULTI, LEGACY_ALERTING], ids=["unified", "multi", "legacy"])
def test_200_only_after_the_delivery_is_committed(server, tmp_path: Path, body: bytes) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = send(base_url, "/grafana/console", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    assert ("console", answer["request_id"]) in stored_rows(tmp_path)


def test_put_is_accepted_too(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = send(base_url, "/grafana/console", FIRING, method="PUT")
    assert response.status_code == 200, response.text
    assert len(stored_rows(tmp_path)) == 1
    assert httpx.get(f"{base_url}/grafana/console", timeout=10).status_code == 405


def test_webhook_auth_applies(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    for authorization in ("", "Bearer wrong"):
        response = send(base_url, "/grafana/console", FIRING, Authorization=authorization)
        assert response.status_code == 401
        assert TOKEN not in response.text
    # Before the receiver lookup, so names do not leak.
    assert send(base_url, "/grafana/nope", FIRING, Authorization="").status_code == 401
    assert stored_rows(tmp_path) == []


def test_404_415_413(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    missing = send(base_url, "/grafana/nope", FIRING)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert send(base_url, "/grafana/console", FIRING, **{"Content-Type": "text/plain"}).status_code == 415
    too_big = send(base_url, "/grafana/console", b" " * (64 * 1024 + 1))
    assert too_big.status_code == 413 and "max_body_bytes" in too_big.json()["error"]
    assert stored_rows(tmp_path) == []


def test_503_when_the_store_cannot_commit(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, store, _ = server
    store.failing = True
    assert send(base_url, "/grafana/console", FIRING).status_code == 503
    store.failing = False
    assert send(base_url, "/grafana/console", FIRING).status_code == 200


@pytest.mark.parametrize("body", [RESOLVED, LEGACY_OK], ids=["unified", "legacy"])
def test_send_resolved_false_drops_resolved_groups(server, tmp_path: Path, body: bytes) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = send(base_url, "/grafana/quiet", body)
    assert response.status_code == 200 and response.json()["status"] == "dropped"
    assert stored_rows(tmp_path) == []
    # A mixed group keeps only its firing alert.
    assert send(base_url, "/grafana/quiet", MULTI).json()["status"] == "accepted"


# --- wrong endpoint ---------------------------------------------------------


@pytest.mark.parametrize("body", [FIRING, LEGACY_ALERTING], ids=["unified", "legacy"])
def test_alertmanager_endpoint_points_grafana_bodies_to_grafana(server, tmp_path: Path, body: bytes) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = send(base_url, "/alertmanager/console", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "/grafana/{receiver}" in error and "\n" not in error
    assert stored_rows(tmp_path) == []


def test_grafana_endpoint_points_alertmanager_bodies_to_alertmanager(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = send(base_url, "/grafana/console", AM_FIRING)
    assert response.status_code == 400
    assert "/alertmanager/{receiver}" in response.json()["error"]
    bad = send(base_url, "/grafana/console", b'{"version": "1", "orgId": 1}')
    assert bad.status_code == 400 and "required field is missing" in bad.json()["error"]
    assert stored_rows(tmp_path) == []


# --- HMAC -------------------------------------------------------------------


def test_hmac_signed_without_timestamp(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    assert send(base_url, "/grafana/signed", FIRING, **signed_headers(FIRING)).status_code == 200
    # grafana/alerting's code falls back to this name when none is configured.
    other = signed_headers(FIRING, header="X-Grafana-Alert-Signature")
    assert send(base_url, "/grafana/signed", FIRING, **other).status_code == 200
    assert len(stored_rows(tmp_path)) == 2


def test_hmac_signed_with_a_fresh_timestamp(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    headers = signed_headers(LEGACY_ALERTING, int(time.time()))
    assert send(base_url, "/grafana/signed", LEGACY_ALERTING, method="PUT", **headers).status_code == 200
    assert len(stored_rows(tmp_path)) == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing X-Grafana-Alerting-Signature"),
        ({"X-Grafana-Alerting-Signature": "0" * 64}, "does not match"),
        ({"X-Grafana-Alerting-Signature": sign("wrong-secret", FIRING)}, "does not match"),
        ({"X-Grafana-Alerting-Signature": sign(SECRET, FIRING + b" ")}, "does not match"),
        (signed_headers(FIRING, int(time.time()) - 3600), "s old"),
        (signed_headers(FIRING, int(time.time()) + 3600), "in the future"),
        (
            {
                "X-Grafana-Alerting-Signature": sign(SECRET, FIRING),
                "X-Grafana-Alerting-Timestamp": "1700000000",
            },
            "does not match",
        ),
        (
            {
                "X-Grafana-Alerting-Signature": sign(SECRET, FIRING, "soon"),
                "X-Grafana-Alerting-Timestamp": "soon",
            },
            "not a Unix timestamp",
        ),
    ],
    ids=[
        "missing",
        "garbage",
        "wrong-secret",
        "other-body",
        "stale",
        "future",
        "timestamp-not-signed",
        "bad-timestamp",
    ],
)
def test_hmac_failures_are_401(server, tmp_path: Path, headers: dict[str, str], reason: str) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = send(base_url, "/grafana/signed", FIRING, **headers)
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert reason in error and "grafana_hmac_secret" in error and "\n" not in error
    assert SECRET not in response.text and sign(SECRET, FIRING) not in response.text
    assert stored_rows(tmp_path) == []


def test_hmac_is_checked_before_the_payload(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    assert send(base_url, "/grafana/signed", b"{not json").status_code == 401
    assert send(base_url, "/grafana/signed", b"{not json", **signed_headers(b"{not json")).status_code == 400


def test_hmac_does_not_replace_webhook_auth(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    response = send(base_url, "/grafana/signed", FIRING, Authorization="", **signed_headers(FIRING))
    assert response.status_code == 401


def test_a_signed_receiver_is_not_reachable_unsigned_at_the_alertmanager_url(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    unsigned = send(base_url, "/alertmanager/signed", AM_FIRING)
    assert unsigned.status_code == 401
    assert "/grafana/signed" in unsigned.json()["error"]
    # Not even with Grafana's signature: that endpoint does not check it.
    assert send(base_url, "/alertmanager/signed", AM_FIRING, **signed_headers(AM_FIRING)).status_code == 401
    assert stored_rows(tmp_path) == []
    assert send(base_url, "/grafana/signed", FIRING, **signed_headers(FIRING)).status_code == 200


def test_receivers_without_a_secret_need_no_signature(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, _ = server
    assert (
        send(base_url, "/grafana/console", FIRING, **{"X-Grafana-Alerting-Signature": "junk"}).status_code
        == 200
    )


# --- what reaches the channel -----------------------------------------------


def test_zh_markdown_shows_values_and_links(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, out = server
    assert send(base_url, "/grafana/console", MULTI).status_code == 200
    printed = wait_for(out, "receiver=console", "[面板截图]")
    assert "> 数值：A=2473545728, B=0.8125, C=1" in printed
    assert "> 数值：A=0.31, C=0" in printed
    assert "[告警规则](https://grafana.example.org/alerting/grafana/b7Lq0/view?orgId=3)" in printed
    assert "[仪表盘](https://grafana.example.org/d/api-overview?orgId=3)" in printed
    assert "[面板](https://grafana.example.org/d/api-overview?orgId=3&viewPanel=12)" in printed
    assert "[面板截图](https://grafana.example.org/public/img/attachments/s3cr3tT0k3n.png)" in printed
    # Grafana's own silence form, not an Alertmanager one built on externalURL,
    # once for the group (a link per alert would crowd the alerts out).
    assert (
        printed.count(
            "[静默本组](https://grafana.example.org/alerting/silence/new?alertmanager=grafana&matcher="
        )
        == 1
    )
    assert "#/silences/new" not in printed
    assert "另有 1 条告警未显示" in printed


def test_en_text_shows_values_and_links(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, out = server
    assert send(base_url, "/grafana/english", FIRING).status_code == 200
    printed = wait_for(out, "receiver=english", "Silence this group:")
    assert "msgtype=text" in printed
    assert "Values: A=95.2, C=1" in printed
    assert "Rule: https://grafana.example.org/alerting/grafana/adx7k2m9q1/view?orgId=1" in printed
    assert "Dashboard: https://grafana.example.org/d/node-disk?orgId=1" in printed
    assert "Panel: https://grafana.example.org/d/node-disk?orgId=1&viewPanel=4" in printed
    assert (
        "Silence this group: https://grafana.example.org/alerting/silence/new?alertmanager=grafana" in printed
    )
    assert "Panel image" not in printed


def test_legacy_notification_reaches_the_console(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _, out = server
    assert send(base_url, "/grafana/english", LEGACY_ALERTING).status_code == 200
    printed = wait_for(out, "receiver=english", "Panel image:")
    assert "Web CPU high [FIRING]" in printed
    assert "Values: web-1.cpu=97.3, web-2.cpu=91" in printed
    assert "Rule: https://grafana.example.org/d/web-hosts/" in printed
    assert "Silence:" not in printed
