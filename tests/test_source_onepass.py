"""The one-pass (msgspec) decoder makes of every body exactly what the validating
(pydantic) path makes of it: the same group, stored as the same text under the
same dedup key, or the same one-line refusal. Alertmanager retries nothing
refused, and a dedup key that changed would let an HA peer's copy through."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertbridge.errors import PayloadError
from alertbridge.sources import alertmanager, grafana, onepass
from alertbridge.sources.alertmanager import SOURCE as ALERTMANAGER
from alertbridge.stores.codec import dumps
from tests.v4_bodies import (
    alertmanager_bodies,
    damaged,
    grafana_bodies,
    one_field_off,
    time_texts,
    valid_alertmanager_bodies,
    valid_alertmanager_messages,
    valid_grafana_messages,
)

RECEIVED = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data"
FIXTURES = sorted((DATA / "alertmanager").glob("*.json")) + sorted((DATA / "grafana").glob("*.json"))
FUZZ = sorted(p for p in (DATA / "fuzz_corpus").glob("*.json") if p.name != "manifest.json")

Outcome = tuple[str, ...]


def outcome(body: bytes, parse: object) -> Outcome:
    """What a parser made of ``body``: the group (its repr: down to the time
    zone objects), the stored text and the dedup key; or the refusal."""
    assert callable(parse)
    try:
        group = parse(body)
    except PayloadError as exc:
        return ("refused", str(exc))
    return ("parsed", repr(group), dumps(group.to_dict()), group.notification_key())


def same_as_validating(body: bytes) -> None:
    fast = alertmanager.parse(body)  # any PayloadError here fails the test
    assert fast == alertmanager.validating_parse(body)
    assert outcome(body, alertmanager.parse) == outcome(body, alertmanager.validating_parse)


def test_the_captured_alertmanager_bodies_take_the_one_pass() -> None:
    for path in sorted((DATA / "alertmanager").glob("*.json")):
        body = path.read_bytes()
        if b'"groupKey": 1' in body:
            continue
        group = onepass.alertmanager_group(ALERTMANAGER, body)
        assert group == alertmanager.validating_parse(body), path.name
        same_as_validating(body)


def test_newer_alertmanagers_fields_take_the_one_pass_too() -> None:
    data = json.loads((DATA / "alertmanager" / "firing.json").read_bytes())
    # 0.32 added notification_reason, 0.34 routeLabels (docs: Alertmanager's notify/webhook).
    data |= {"notification_reason": "new alerts added", "routeLabels": {"team": "db"}}
    body = json.dumps(data).encode()
    assert onepass.alertmanager_group(ALERTMANAGER, body) == alertmanager.validating_parse(body)
    same_as_validating(body)
    # A shape the model does not know still goes the validating way, with the same result.
    odd = json.dumps(data | {"routeLabels": {"team": 1}}).encode()
    with pytest.raises(onepass.NotTaken):
        onepass.alertmanager_group(ALERTMANAGER, odd)
    same_as_validating(odd)


@pytest.mark.parametrize("path", FIXTURES + FUZZ, ids=lambda p: p.name)
def test_every_fixture_ends_as_the_validating_path_ends(path: Path) -> None:
    body = path.read_bytes()
    assert outcome(body, alertmanager.parse) == outcome(body, alertmanager.validating_parse)


@given(body=valid_alertmanager_bodies)
def test_what_alertmanager_sends_takes_the_one_pass(body: bytes) -> None:
    group = onepass.alertmanager_group(ALERTMANAGER, body)
    assert group == alertmanager.validating_parse(body)
    assert outcome(body, alertmanager.parse) == outcome(body, alertmanager.validating_parse)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(body=alertmanager_bodies | damaged(alertmanager_bodies))
def test_any_body_ends_as_the_validating_path_ends(body: bytes) -> None:
    assert outcome(body, alertmanager.parse) == outcome(body, alertmanager.validating_parse)


@settings(max_examples=1000)
@given(body=one_field_off(valid_alertmanager_messages))
def test_one_odd_field_ends_as_the_validating_path_ends(body: bytes) -> None:
    assert outcome(body, alertmanager.parse) == outcome(body, alertmanager.validating_parse)


@given(data=valid_alertmanager_messages, times=st.data())
def test_times_of_any_shape_end_as_the_validating_path_ends(
    data: dict[str, Any], times: st.DataObject
) -> None:
    for alert in data["alerts"]:
        alert["startsAt"] = times.draw(time_texts)
        alert["endsAt"] = times.draw(time_texts)
    body = json.dumps(data).encode()
    assert outcome(body, alertmanager.parse) == outcome(body, alertmanager.validating_parse)


def grafana_parse(body: bytes) -> object:
    return grafana.parse(body, received_at=RECEIVED)


def grafana_validating(body: bytes) -> object:
    return grafana.validating_parse(body, RECEIVED)


def test_the_captured_grafana_bodies_take_the_one_pass() -> None:
    taken = 0
    for path in sorted((DATA / "grafana").glob("unified-*.json")):
        body = path.read_bytes()
        try:
            onepass.decode(onepass.UNIFIED, body)
        except onepass.NotTaken:
            continue  # a field the Structs do not declare (enrichments): the validating way
        taken += 1
        assert outcome(body, grafana_parse) == outcome(body, grafana_validating), path.name
    assert taken >= 2


@pytest.mark.parametrize("path", FIXTURES + FUZZ, ids=lambda p: p.name)
def test_every_fixture_ends_in_grafana_as_the_validating_path_ends(path: Path) -> None:
    body = path.read_bytes()
    assert outcome(body, grafana_parse) == outcome(body, grafana_validating)


@given(data=valid_grafana_messages())
def test_what_grafana_sends_takes_the_one_pass(data: dict[str, Any]) -> None:
    body = json.dumps(data, ensure_ascii=False).encode()
    onepass.decode(onepass.UNIFIED, body)
    assert outcome(body, grafana_parse) == outcome(body, grafana_validating)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(body=grafana_bodies | damaged(grafana_bodies))
def test_any_grafana_body_ends_as_the_validating_path_ends(body: bytes) -> None:
    assert outcome(body, grafana_parse) == outcome(body, grafana_validating)


@settings(max_examples=1000)
@given(body=one_field_off(valid_grafana_messages(), grafana=True))
def test_one_odd_grafana_field_ends_as_the_validating_path_ends(body: bytes) -> None:
    assert outcome(body, grafana_parse) == outcome(body, grafana_validating)
