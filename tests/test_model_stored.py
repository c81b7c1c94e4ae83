"""What the store keeps of a group must come out the same in every version: a
dedup key that changed would let an HA peer's copy of a notification accepted
before an upgrade through, and the stored JSON is compared and read back by
other versions. The keys below were computed before Phase 10's rewrites; the
stored text was pinned again when Phase 10 left out fields at their defaults,
and the text stored before that (tests/data/stored/) must still read back."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.sources import alertmanager, grafana
from alertbridge.stores.codec import dumps, loads

DATA = Path(__file__).parent / "data"


def test_keys_of_captured_bodies_are_the_keys_stored_before() -> None:
    firing = alertmanager.parse((DATA / "alertmanager" / "firing.json").read_bytes())
    assert firing.notification_key() == "bba9659c76e4b0fbe03ed4dc62a743d14fec72692e933083b5585da5c459259a"
    multi = grafana.parse((DATA / "grafana" / "unified-multi.json").read_bytes())
    assert multi.notification_key() == "7e75d013a3ec5de80825e4824554832048bb1dc76e807755ebf488f4e6ba78b2"


def test_stored_text_of_captured_bodies_is_pinned_and_reads_back() -> None:
    for source, path, digest in [
        (
            alertmanager.parse,
            "alertmanager/firing.json",
            "6e937337b5ca8a749eeb1b2e4dce2fbaab5e85aaa95e8d8880abd5d19773d882",
        ),
        (
            grafana.parse,
            "grafana/unified-multi.json",
            "9a3bdfee0231f0cc697f46703a3d34b8d748c09bf9a94d7f928ec21dddd3759c",
        ),
    ]:
        group = source((DATA / path).read_bytes())
        text = dumps(group.to_dict())
        assert hashlib.sha256(text.encode()).hexdigest() == digest, path
        assert AlertGroup.from_dict(loads(text)) == group


def test_text_stored_with_every_field_still_reads_back() -> None:
    """Rows written before Phase 10 carry every field, defaults included."""
    for source, path, stored in [
        (alertmanager.parse, "alertmanager/firing.json", "stored/alertmanager-firing.json"),
        (grafana.parse, "grafana/unified-multi.json", "stored/grafana-unified-multi.json"),
    ]:
        group = source((DATA / path).read_bytes())
        old = loads((DATA / stored).read_text(encoding="utf-8"))
        assert AlertGroup.from_dict(old) == group
        # What is left out now is exactly what was at its default then.
        new = group.to_dict()
        for was, now in zip(old["alerts"], new["alerts"], strict=True):
            assert {k: v for k, v in was.items() if k not in now} == {
                k: v for k, v in was.items() if k not in now and v in ("", None)
            }
        assert all(old[k] in ("", None, 0, False) for k in old.keys() - new.keys())


def test_every_version_reads_the_keys_it_requires() -> None:
    """Older releases index these keys without a default: they are always written."""
    group = alertmanager.parse((DATA / "alertmanager" / "firing.json").read_bytes())
    data = group.to_dict()
    assert {"source", "status", "group_key", "alerts"} <= data.keys()
    for alert in data["alerts"]:
        assert {"status", "labels", "annotations", "starts_at", "ends_at", "fingerprint"} <= alert.keys()


def _alert(fingerprint: str, status: Status, starts_at: datetime, ends_at: datetime | None) -> Alert:
    return Alert(
        status=status,
        labels={},
        annotations={},
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint,
    )


def test_key_of_escapes_offsets_and_order_is_the_key_stored_before() -> None:
    group = AlertGroup(
        source="alertmanager",
        status=Status.RESOLVED,
        group_key='{}/{team="运维"}:{alertname="Disk \\"full\\"\tx"}',
        alerts=(
            _alert(
                "b\u2028",
                Status.RESOLVED,
                datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=8))),
                datetime(2026, 1, 2, 4, 0, tzinfo=UTC),
            ),
            _alert("a\x00", Status.FIRING, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), None),
            _alert(
                "a",
                Status.FIRING,
                datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
                None,
            ),
        ),
    )
    assert group.notification_key() == "1f6b0e708515f9f3e9f71f22a48ba44077444787ebff5da46231f87e430e7376"


def _key_as_before(group: AlertGroup) -> str:
    """The previous version's definition, verbatim."""
    identity = [
        group.source,
        group.group_key,
        group.status.value,
        sorted(
            [
                a.fingerprint,
                a.status.value,
                a.starts_at.isoformat(),
                a.ends_at.isoformat() if a.ends_at else "",
            ]
            for a in group.alerts
        ),
    ]
    return hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()


times = st.datetimes(timezones=st.timezones() | st.just(UTC))
statuses = st.sampled_from(Status)
alerts = st.builds(_alert, st.text(), statuses, times, st.none() | times)


@given(source=st.text(), group_key=st.text(), status=statuses, members=st.lists(alerts, max_size=4))
def test_key_is_the_previous_definition(
    source: str, group_key: str, status: Status, members: list[Alert]
) -> None:
    group = AlertGroup(source=source, status=status, group_key=group_key, alerts=tuple(members))
    assert group.notification_key() == _key_as_before(group)
