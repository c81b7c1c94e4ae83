"""Bodies from senders older or odder than the ones we capture, through a real server.

Alertmanager never retries a 4xx, so anything refused here is lost: these
tests pin what must be accepted (and delivered) and what must be refused
with a one-line reason before it is answered 200.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from alertbridge.config import parse_config
from alertbridge.sources import alertmanager, grafana
from alertbridge.sources.common import label_fingerprint

DATA = Path(__file__).parent / "data" / "alertmanager"
TOKEN = "webhook-token-0123456789"


@pytest.fixture
def server(tmp_path: Path, serve_app: Callable[..., str]) -> tuple[str, io.StringIO]:
    config = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
            "webhook_auth": {"bearer_token": TOKEN},
            "receivers": {"console": {"channel": "console"}},
        },
        {},
        "test.toml",
    )
    out = io.StringIO()
    return serve_app(config, out=out), out


def post(base_url: str, path: str, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return httpx.post(f"{base_url}{path}", content=body, headers=headers, timeout=10)


def wait_printed(out: io.StringIO, text: str) -> str:
    deadline = time.monotonic() + 10
    while text not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    return out.getvalue()


def test_label_fingerprint_is_alertmanagers_own() -> None:
    """Every fingerprint a real Alertmanager 0.25 computed, recomputed from its labels."""
    checked = 0
    for path in sorted(DATA.glob("*.json")):
        for alert in json.loads(path.read_text(encoding="utf-8"))["alerts"]:
            if "fingerprint" in alert:
                assert label_fingerprint(alert["labels"]) == alert["fingerprint"], path.name
                checked += 1
    assert checked >= 6
    # An empty label set hashes to FNV-1a's offset basis, as in Go.
    assert label_fingerprint({}) == "cbf29ce484222325"


def test_pre_019_body_gets_the_fingerprint_019_would_have_sent() -> None:
    old = alertmanager.parse((DATA / "pre-0.19-firing.json").read_bytes())
    new = alertmanager.parse((DATA / "firing-single.json").read_bytes())
    assert old.alerts[0].fingerprint == new.alerts[0].fingerprint == "aaad41320734752c"
    assert old.truncated_alerts == 0
    # The same notification from before and after an upgrade is one notification.
    assert old.notification_key() == new.notification_key()


def test_numeric_group_key_of_alertmanager_before_07() -> None:
    data = json.loads((DATA / "pre-0.19-firing.json").read_text(encoding="utf-8"))
    data["groupKey"] = 11400867398394113390
    assert alertmanager.parse(json.dumps(data).encode()).group_key == "11400867398394113390"


def test_pre_019_body_is_accepted_and_delivered(server: tuple[str, io.StringIO]) -> None:
    base_url, out = server
    response = post(base_url, "/alertmanager/console", (DATA / "pre-0.19-firing.json").read_bytes())
    assert response.status_code == 200, response.text
    printed = wait_printed(out, "E2EDiskFull")
    assert "E2EDiskFull" in printed and "db-1:9100" in printed


@pytest.mark.parametrize("fingerprint", [None, ""])
def test_grafana_alert_without_fingerprint_gets_one_from_its_labels(fingerprint: str | None) -> None:
    data = json.loads((DATA.parent / "grafana" / "unified-firing.json").read_text(encoding="utf-8"))
    alert = data["alerts"][0]
    if fingerprint is None:
        del alert["fingerprint"]
    else:
        alert["fingerprint"] = fingerprint
    parsed = grafana.parse(json.dumps(data).encode())
    assert parsed.alerts[0].fingerprint == label_fingerprint(alert["labels"])


def _with_times(source: str, starts_at: str, ends_at: str) -> bytes:
    path = (
        DATA / "firing-single.json"
        if source == "alertmanager"
        else DATA.parent / "grafana" / "unified-firing.json"
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    for alert in data["alerts"]:
        alert["startsAt"] = starts_at
        alert["endsAt"] = ends_at
    return json.dumps(data).encode()


@pytest.mark.parametrize("source", ["alertmanager", "grafana"])
@pytest.mark.parametrize(
    ("starts_at", "ends_at", "field"),
    [
        ("9999-12-31", "0001-01-01T00:00:00Z", "startsAt"),
        ("9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z", "startsAt"),
        ("0001-01-01T00:00+14:00", "0001-01-01T00:00:00Z", "startsAt"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "startsAt"),
        ("2026-11-29T12:00:00Z", "9999-12-31T23:00:00-12:00", "endsAt"),
    ],
)
def test_times_that_cannot_be_converted_are_refused_at_ingest(
    server: tuple[str, io.StringIO], source: str, starts_at: str, ends_at: str, field: str
) -> None:
    base_url, _ = server
    response = post(base_url, f"/{source}/console", _with_times(source, starts_at, ends_at))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert f"alerts[0].{field}: time out of range" in error and "\n" not in error


@pytest.mark.parametrize("source", ["alertmanager", "grafana"])
def test_go_zero_time_as_ends_at_is_accepted_and_delivered(
    server: tuple[str, io.StringIO], source: str
) -> None:
    base_url, out = server
    response = post(
        base_url, f"/{source}/console", _with_times(source, "2026-11-29T12:00:00Z", "0001-01-01T00:00:00Z")
    )
    assert response.status_code == 200, response.text
    name = "E2EDiskFull" if source == "alertmanager" else "DiskAlmostFull"
    assert name in wait_printed(out, name)
