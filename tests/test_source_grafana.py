"""Grafana webhook parsing: unified alerting (version "1") and legacy dashboard alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from alertbridge.errors import PayloadError
from alertbridge.model import AlertGroup, Status, format_value
from alertbridge.sources import alertmanager, grafana
from alertbridge.sources.common import grafana_flavour

DATA = Path(__file__).parent / "data" / "grafana"
AM_DATA = Path(__file__).parent / "data" / "alertmanager"
RECEIVED = datetime(2026, 11, 29, 15, 0, 0, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def parse(name: str) -> AlertGroup:
    return grafana.parse((DATA / name).read_bytes(), received_at=RECEIVED)


def reason_of(exc: pytest.ExceptionInfo[PayloadError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- unified alerting ------------------------------------------------------


def test_unified_firing() -> None:
    group = parse("unified-firing.json")
    assert group.source == "grafana"
    assert group.status is Status.FIRING
    assert not group.legacy
    assert group.org_id == 1
    assert group.group_key.startswith("{}/{severity=")
    assert group.title.startswith("[FIRING:1] DiskAlmostFull")
    assert group.message.startswith("**Firing**")
    assert group.external_url == "https://grafana.example.org/"
    assert group.source_receiver == "wecom-ops"
    assert group.common_labels["grafana_folder"] == "Infrastructure"
    (alert,) = group.alerts
    assert alert.status is Status.FIRING
    # Go's zero time means "still firing".
    assert alert.ends_at is None
    # Nanoseconds are cut to microseconds, the zone kept.
    assert alert.starts_at == datetime(2026, 11, 29, 12, 8, 44, 123456, tzinfo=UTC)
    # Taken as sent: Grafana hashes labels it does not send.
    assert alert.fingerprint == "4c1f9a2b7d3e6f08"
    assert dict(alert.values or {}) == {"A": 95.2, "C": 1.0}
    assert alert.value_string.startswith("[ var='A'")
    assert alert.values_text == "A=95.2, C=1"
    assert alert.dashboard_url == "https://grafana.example.org/d/node-disk?orgId=1"
    assert alert.panel_url.endswith("viewPanel=4")
    assert alert.silence_url.startswith("https://grafana.example.org/alerting/silence/new?")
    assert alert.rule_uid == "adx7k2m9q1"
    assert alert.image_url == ""
    assert alert.generator_url.endswith("/view?orgId=1")


def test_unified_resolved_uses_value_string_when_values_are_null() -> None:
    group = parse("unified-resolved.json")
    assert group.status is Status.RESOLVED
    (alert,) = group.alerts
    assert alert.status is Status.RESOLVED
    assert alert.ends_at == datetime(2026, 11, 29, 13, 1, 10, 500000, tzinfo=UTC)
    assert alert.values is None
    assert alert.values_text == "[ var='A' labels={instance=db-1:9100} value=71.8 ]"
    assert alert.dashboard_url == alert.panel_url == alert.image_url == ""
    assert alert.rule_uid == ""  # older Grafana: no ruleUID


def test_unified_multi_alert_with_values_and_image() -> None:
    group = parse("unified-multi.json")
    assert group.org_id == 3
    assert group.truncated_alerts == 1
    assert [a.status for a in group.alerts] == [Status.FIRING, Status.RESOLVED]
    assert group.firing[0].labels["service"] == "checkout"
    first, second = group.alerts
    assert first.image_url.endswith("s3cr3tT0k3n.png")
    # Sorted by refID, integers without ".0", big numbers in full.
    assert first.values_text == "A=2473545728, B=0.8125, C=1"
    assert second.values_text == "A=0.31, C=0"
    assert first.starts_at == datetime(2026, 11, 29, 14, 50, tzinfo=timezone(timedelta(hours=8)))
    assert second.ends_at is not None and second.ends_at.tzinfo is not None


def test_unified_unknown_fields_and_missing_optional_ones_are_fine() -> None:
    data = load("unified-firing.json")
    data["somethingNew"] = {"x": 1}
    alert = data["alerts"][0]
    for key in ("silenceURL", "dashboardURL", "panelURL", "values", "valueString", "ruleUID", "annotations"):
        del alert[key]
    alert["enrichments"] = [1, 2]
    del data["orgId"], data["title"], data["message"]
    group = grafana.parse(body(data))
    (parsed,) = group.alerts
    assert parsed.values is None and parsed.values_text == ""
    assert parsed.silence_url == "" and dict(parsed.annotations) == {}
    assert group.org_id is None and group.title == ""


def test_naive_times_are_utc() -> None:
    data = load("unified-firing.json")
    data["alerts"][0]["startsAt"] = "2026-11-29T12:08:44"
    (alert,) = grafana.parse(body(data)).alerts
    assert alert.starts_at.tzinfo is not None and alert.starts_at.utcoffset() == timedelta(0)


def test_model_round_trip_keeps_grafana_fields() -> None:
    for name in (
        "unified-firing.json",
        "unified-multi.json",
        "unified-resolved.json",
        "legacy-alerting.json",
    ):
        group = parse(name)
        again = AlertGroup.from_dict(json.loads(json.dumps(group.to_dict())))
        assert again == group
        assert again.to_dict() == group.to_dict()


def test_rows_stored_before_grafana_support_still_decode() -> None:
    stored = alertmanager.parse((AM_DATA / "firing.json").read_bytes()).to_dict()
    old_keys = (
        "values",
        "value_string",
        "image_url",
        "dashboard_url",
        "panel_url",
        "silence_url",
        "rule_uid",
    )
    # (Since Phase 10 an Alertmanager group is stored without them anyway.)
    for alert in stored["alerts"]:
        for key in old_keys:
            alert.pop(key, None)
    for key in ("title", "message", "org_id", "legacy"):
        stored.pop(key, None)
    group = AlertGroup.from_dict(stored)
    assert group.org_id is None and group.legacy is False and group.title == ""
    assert all(a.values is None and a.silence_url == "" for a in group.alerts)


def test_with_alerts_keeps_grafana_group_fields() -> None:
    group = parse("unified-multi.json")
    narrowed = group.with_alerts(group.firing)
    assert narrowed.org_id == 3 and narrowed.title == group.title and narrowed.message == group.message
    assert narrowed.status is Status.FIRING and len(narrowed.alerts) == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [(95.2, "95.2"), (1.0, "1"), (0.0, "0"), (-3.0, "-3"), (2473545728.0, "2473545728"), (1.5e-7, "1.5e-07")],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


# --- legacy alerting -------------------------------------------------------


def test_legacy_alerting_becomes_one_synthetic_alert() -> None:
    group = parse("legacy-alerting.json")
    assert group.source == "grafana"
    assert group.legacy
    assert group.status is Status.FIRING
    assert group.group_key == "grafana-legacy/42"
    assert group.org_id == 2
    assert group.title == "[Alerting] Web CPU high"
    (alert,) = group.alerts
    assert dict(alert.labels) == {
        "alertname": "Web CPU high",
        "rule_id": "42",
        "severity": "warning",
        "team": "web",
    }
    assert alert.annotations["message"] == "CPU 使用率持续 5 分钟超过 90%"
    assert alert.annotations["grafana_state"] == "alerting"
    assert dict(alert.values or {}) == {"web-1.cpu": 97.3, "web-2.cpu": 91.0}
    assert alert.image_url.endswith("legacy-cpu.png")
    assert alert.generator_url.startswith("https://grafana.example.org/d/web-hosts/")
    assert alert.silence_url == ""  # legacy alerts have no silence API
    # No times in the payload: when it was received.
    assert alert.starts_at == RECEIVED and alert.ends_at is None
    assert len(alert.fingerprint) == 16
    assert group.common_labels["alertname"] == "Web CPU high"


def test_legacy_ok_resolves_the_same_alert() -> None:
    alerting = parse("legacy-alerting.json")
    ok = parse("legacy-ok.json")
    assert ok.status is Status.RESOLVED
    assert ok.group_key == alerting.group_key
    (alert,) = ok.alerts
    assert alert.status is Status.RESOLVED
    assert alert.ends_at == RECEIVED
    assert alert.fingerprint == alerting.alerts[0].fingerprint
    assert "message" not in alert.annotations
    assert alert.values_text == ""


def test_legacy_fingerprint_depends_on_org_and_rule() -> None:
    data = load("legacy-alerting.json")
    base = grafana.parse(body(data), received_at=RECEIVED).alerts[0].fingerprint
    # Stable across calls and states.
    assert grafana.parse(body({**data, "state": "no_data"})).alerts[0].fingerprint == base
    assert grafana.parse(body({**data, "orgId": 3})).alerts[0].fingerprint != base
    assert grafana.parse(body({**data, "ruleId": 43})).alerts[0].fingerprint != base


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("alerting", Status.FIRING),
        ("no_data", Status.FIRING),
        ("pending", Status.FIRING),
        ("ok", Status.RESOLVED),
        ("paused", Status.RESOLVED),
    ],
)
def test_legacy_state_mapping(state: str, status: Status) -> None:
    group = grafana.parse(body({**load("legacy-alerting.json"), "state": state}), received_at=RECEIVED)
    assert group.status is status
    assert group.alerts[0].status is status
    assert group.alerts[0].annotations["grafana_state"] == state


def test_legacy_eval_matches_edge_cases() -> None:
    data = {
        **load("legacy-alerting.json"),
        "evalMatches": [
            {"metric": "cpu", "value": 1.5, "tags": None},
            {"metric": "cpu", "value": 2, "tags": None},
            {"metric": "", "value": 3},
            {"metric": "gone", "value": None},
        ],
        "tags": None,
        "message": None,
    }
    (alert,) = grafana.parse(body(data), received_at=RECEIVED).alerts
    assert dict(alert.values or {}) == {"cpu": 1.5, "cpu #2": 2.0, "#3": 3.0}
    assert "message" not in alert.annotations
    assert set(alert.labels) == {"alertname", "rule_id"}


def test_legacy_tags_cannot_override_identity_labels() -> None:
    data = {**load("legacy-alerting.json"), "tags": {"alertname": "spoof", "rule_id": "1", "env": "prod"}}
    (alert,) = grafana.parse(body(data), received_at=RECEIVED).alerts
    assert alert.labels["alertname"] == "Web CPU high"
    assert alert.labels["rule_id"] == "42"
    assert alert.labels["env"] == "prod"


def test_legacy_early_snake_case_urls_and_minimal_body() -> None:
    data = {
        "ruleId": 5,
        "ruleName": "Old",
        "state": "alerting",
        "evalMatches": None,
        "rule_url": "http://g/old",
        "image_url": "http://g/old.png",
    }
    group = grafana.parse(body(data), received_at=RECEIVED)
    (alert,) = group.alerts
    assert alert.generator_url == "http://g/old" and alert.image_url == "http://g/old.png"
    assert group.org_id is None and alert.values_text == ""


def test_legacy_without_received_at_uses_the_current_time() -> None:
    before = datetime.now(UTC)
    (alert,) = grafana.parse((DATA / "legacy-alerting.json").read_bytes()).alerts
    assert before <= alert.starts_at <= datetime.now(UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        grafana.parse((DATA / "legacy-alerting.json").read_bytes(), received_at=datetime(2026, 1, 1))


# --- wrong endpoint, wrong shape -------------------------------------------


def test_alertmanager_body_is_sent_to_its_own_endpoint() -> None:
    with pytest.raises(PayloadError) as exc:
        grafana.parse((AM_DATA / "firing.json").read_bytes())
    assert "this is an Alertmanager payload; post it to /alertmanager/{receiver}" in reason_of(exc)


@pytest.mark.parametrize(
    "name", ["unified-firing.json", "unified-resolved.json", "legacy-alerting.json", "legacy-ok.json"]
)
def test_alertmanager_parser_sends_grafana_bodies_to_grafana(name: str) -> None:
    with pytest.raises(PayloadError) as exc:
        alertmanager.parse((DATA / name).read_bytes())
    assert "this is a Grafana payload; post it to /grafana/{receiver}" in reason_of(exc)


def test_flavour_detection() -> None:
    assert grafana_flavour(load("unified-firing.json")) == "unified"
    assert grafana_flavour(load("legacy-ok.json")) == "legacy"
    assert grafana_flavour(json.loads((AM_DATA / "firing.json").read_text())) is None
    assert grafana_flavour({"version": "1"}) is None  # not enough to claim it is Grafana
    assert grafana_flavour({"evalMatches": [], "version": "4"}) is None
    assert grafana.looks_like_grafana((DATA / "legacy-ok.json").read_bytes())
    assert not grafana.looks_like_grafana(b"{")
    assert not grafana.looks_like_grafana((AM_DATA / "firing.json").read_bytes())


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _alert_field(value: object, key: str) -> dict[str, Any]:
    data = load("unified-firing.json")
    data["alerts"][0][key] = value
    return data


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "body is not valid JSON"),
        (b"\xff", "body is not valid JSON"),
        (b"[1]", "body must be a JSON object"),
        (body({"hello": "world"}), "custom payload templates are not supported"),
        (body({"version": "2", "orgId": 1}), 'expected "version": "1" (Grafana unified alerting), got \'2\''),
        (body(_without(load("unified-firing.json"), "groupKey")), "groupKey: required field is missing"),
        (body({**load("unified-firing.json"), "alerts": []}), "alerts: List should have at least 1 item"),
        (
            body({**load("unified-firing.json"), "status": "pending"}),
            "status: Input should be 'firing' or 'resolved'",
        ),
        (body({**load("unified-firing.json"), "orgId": "main"}), "orgId: Input should be a valid integer"),
        (body(_alert_field({"A": "high"}, "values")), "alerts[0].values.A: Input should be a valid number"),
        (body(_alert_field("yesterday", "startsAt")), "alerts[0].startsAt: Input should be a valid datetime"),
        (body({**load("legacy-alerting.json"), "state": "firing"}), "state: Input should be 'ok', 'paused'"),
        (body(_without(load("legacy-alerting.json"), "ruleId")), "ruleId: required field is missing"),
        (body({**load("legacy-alerting.json"), "ruleId": "x"}), "ruleId: Input should be a valid integer"),
        (
            body({**load("legacy-alerting.json"), "evalMatches": [{"metric": "m", "value": "x"}]}),
            "evalMatches[0].value: Input should be a valid number",
        ),
    ],
)
def test_one_line_reasons_name_the_field(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as exc:
        grafana.parse(payload, received_at=RECEIVED)
    message = reason_of(exc)
    assert message.startswith("invalid grafana payload: ")
    assert reason in message


def test_several_problems_are_counted() -> None:
    data = load("unified-firing.json")
    del data["groupKey"], data["status"]
    with pytest.raises(PayloadError) as exc:
        grafana.parse(body(data))
    assert "(and 1 more problem)" in reason_of(exc)
