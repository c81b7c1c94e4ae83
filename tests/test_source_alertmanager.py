"""Alertmanager webhook v4 parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alertbridge.errors import PayloadError
from alertbridge.model import AlertGroup, Status
from alertbridge.sources.alertmanager import parse

DATA = Path(__file__).parent / "data" / "alertmanager"


def load(name: str) -> dict[str, object]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_firing_group() -> None:
    group = parse((DATA / "firing.json").read_bytes())
    assert group.source == "alertmanager"
    assert group.status is Status.FIRING
    assert group.group_key == '{}:{alertname="E2EHighLatency"}'
    assert len(group.alerts) == 2
    first = group.alerts[0]
    assert first.status is Status.FIRING
    assert first.labels["instance"] == "api-1:9100"
    assert first.fingerprint == "e51cc4d2f2edec8e"
    # Go's zero time means "still firing".
    assert first.ends_at is None
    assert first.starts_at.tzinfo is not None
    assert group.external_url == "http://alertmanager.test:9093"


def test_resolved_and_partially_resolved() -> None:
    resolved = parse((DATA / "resolved.json").read_bytes())
    assert resolved.status is Status.RESOLVED
    assert all(a.ends_at is not None for a in resolved.alerts)
    mixed = parse((DATA / "partially-resolved.json").read_bytes())
    assert mixed.status is Status.FIRING
    assert {a.status for a in mixed.alerts} == {Status.FIRING, Status.RESOLVED}
    assert len(mixed.firing) == 1 and len(mixed.resolved) == 1


def test_truncated_alerts_are_counted() -> None:
    group = parse((DATA / "truncated.json").read_bytes())
    assert group.truncated_alerts == 2


def test_round_trip_through_store_form() -> None:
    group = parse((DATA / "partially-resolved.json").read_bytes())
    assert AlertGroup.from_dict(json.loads(json.dumps(group.to_dict()))) == group


def test_unknown_fields_from_newer_alertmanagers_are_ignored() -> None:
    data = load("firing.json")
    data["notification_reason"] = "first notification"
    data["routeLabels"] = {"team": "a"}
    assert len(parse(body(data)).alerts) == 2


def test_naive_timestamps_are_taken_as_utc() -> None:
    data = load("firing.json")
    data["alerts"][0]["startsAt"] = "2026-11-29T12:00:00"  # type: ignore[index]
    assert parse(body(data)).alerts[0].starts_at == datetime(2026, 11, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"{not json", "body is not valid JSON"),
        (lambda d: b"\xff\xfe", "body is not valid JSON"),
        (lambda d: body([d]), "body must be a JSON object"),
        (lambda d: body({**d, "version": "3"}), 'expected "version": "4"'),
        (lambda d: body({k: v for k, v in d.items() if k != "version"}), 'expected "version": "4"'),
        (lambda d: body({**d, "version": "1", "orgId": 1}), "Grafana payload; post it to /grafana/"),
        (lambda d: body({**d, "alerts": []}), "alerts: List should have at least 1 item"),
        (lambda d: body({**d, "status": "pending"}), "status: Input should be 'firing' or 'resolved'"),
        (lambda d: body({**d, "groupKey": None}), "groupKey"),
        (
            lambda d: body({**d, "alerts": [{**d["alerts"][0], "startsAt": "yesterday"}]}),
            "alerts[0].startsAt",
        ),
        (
            lambda d: body({**d, "alerts": [{**d["alerts"][0], "labels": {"a": 1}}]}),
            "alerts[0].labels.a: Input should be a valid string",
        ),
        (lambda d: b"[" * 100_000 + b"]" * 100_000, "body"),
    ],
)
def test_bad_payloads_get_a_one_line_reason(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PayloadError) as info:
        parse(mutate(load("firing.json")))
    text = str(info.value)
    assert reason in text
    assert "\n" not in text
    assert text.startswith("invalid alertmanager payload: ")
