"""Hypothesis strategies for v4 webhook bodies, valid and nearly so, as raw JSON bytes.

Objects are drawn as lists of (key, value) pairs and written by hand, so a
body can repeat a key (which JSON parsers settle differently if they
disagree) and escape its text as ASCII or not. Each field is usually right
and sometimes wrong in one of the ways senders get it wrong: another JSON
type, missing, null, a near-miss time format, a number where a string goes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hypothesis import strategies as st


class Obj(list[tuple[str, Any]]):
    """A JSON object as written: its pairs in order, repeats allowed."""


def write(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Obj):
        return "{" + ",".join(f"{write(k, ascii_only)}:{write(v, ascii_only)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(write(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.lists(st.tuples(st.text(max_size=6), inner), max_size=3).map(Obj)
    ),
    max_leaves=8,
)

# Label-ish text: mostly plain, sometimes any unicode (hypothesis leaves out lone surrogates).
texts = st.sampled_from(["a", "", "web-1:9100", "CPU 使用率 97%", 'quote " back \\ slash']) | st.text(
    max_size=12
)


def _time_texts() -> st.SearchStrategy[str]:
    """RFC 3339 and its relatives: what Go writes, what people write, what neither should."""
    digits = st.integers(0, 9).map(str)
    fraction = st.lists(digits, max_size=10).map(lambda ds: "." + "".join(ds) if ds else "")
    offset = st.sampled_from(
        ["Z", "z", "", "+00:00", "-00:00", "+01:00", "-07:30", "+23:59", "+0100", "+24:00"]
    )
    year = st.sampled_from(["0001", "0002", "1970", "2026", "9999", "0000"])
    moment = st.builds(
        lambda y, mo, d, sep, h, mi, s, f, z: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{f}{z}",
        year,
        st.sampled_from(["01", "02", "11", "12", "13"]),
        st.sampled_from(["01", "29", "30", "31"]),
        st.sampled_from(["T", "t", " ", "_"]),
        st.sampled_from(["00", "02", "23", "24"]),
        st.sampled_from(["00", "05", "59", "60"]),
        st.sampled_from(["00", "30", "59", "60"]),
        fraction,
        offset,
    )
    return st.one_of(
        moment,
        st.sampled_from(
            [
                "0001-01-01T00:00:00Z",
                "2026-11-29T02:05:30.123456789Z",
                "2026-11-29T02:05:30.9999999Z",
                "9999-12-31T23:59:59Z",
                "9999-12-30T00:00:00Z",
                "0001-01-02T00:00:00Z",
                "0001-01-01T23:00:00-01:00",
                "2026-11-29",
                "2026-11-29T02:05Z",
                "1764381930",
                "now",
                "",
            ]
        ),
    )


# What Go's time.Time marshals to (RFC 3339, nanoseconds, trailing zeros cut), in UTC or an offset.
go_times = st.builds(
    lambda moment, nanos, zone: (
        moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{nanos:09d}".rstrip("0") if nanos else "") + zone
    ),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1)),
    st.integers(0, 999_999_999),
    st.sampled_from(["Z", "+08:00", "-05:00", "+05:45"]),
)


def _rarely(
    odd: st.SearchStrategy[Any], usual: st.SearchStrategy[Any], one_in: int
) -> st.SearchStrategy[Any]:
    """``usual``, and ``odd`` once in ``one_in`` draws: a body has some twenty fields,
    and one odd field is enough to make it one the pydantic path refuses."""
    # Not on a bound of the range: hypothesis draws those far more often.
    return st.integers(1, one_in).flatmap(lambda n: odd if n == one_in // 2 else usual)


def _sometimes(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid``; sometimes another JSON value of any type."""
    return _rarely(any_json, valid, 60)


# Times: mostly what Go writes, a quarter of them of any shape.
time_texts = _rarely(_time_texts(), go_times | st.just("0001-01-01T00:00:00Z"), 4)


def _string_map() -> st.SearchStrategy[Obj]:
    value = _sometimes(texts)
    return st.lists(st.tuples(texts, value), max_size=5).map(Obj)


def _fields(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]) -> Any:
    """An object of these fields: required ones rarely missing, optional ones often,
    sometimes null, sometimes repeated, sometimes joined by an unknown field."""

    @st.composite
    def build(draw: st.DrawFn) -> Obj:
        pairs: list[tuple[str, Any]] = []
        for name, valid in [*required.items(), *optional.items()]:
            # Off the range's bounds, which hypothesis draws far more often.
            presence = draw(st.integers(0, 60))
            if presence == 30 or (name in optional and presence < 20):
                continue
            pairs.append((name, None if presence == 31 else draw(_sometimes(valid))))
            if presence == 32:
                pairs.append((name, draw(_sometimes(valid))))
        if draw(st.integers(0, 20)) == 10:
            extra = (draw(st.sampled_from(["notification_reason", "routeLabels", "x"])), draw(any_json))
            pairs.insert(draw(st.integers(0, len(pairs))), extra)
        if draw(st.booleans()):
            pairs = draw(st.permutations(pairs))
        return Obj(pairs)

    return build()


_status = _rarely(st.sampled_from(["Firing", "pending", ""]), st.sampled_from(["firing", "resolved"]), 20)
_fingerprints = st.sampled_from(["", "aaad41320734752c", "x"]) | st.text(max_size=16)

ALERT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "status": _status,
    "labels": _string_map(),
    "startsAt": time_texts,
}
ALERT_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "annotations": _string_map(),
    "endsAt": time_texts,
    "generatorURL": texts,
    "fingerprint": _fingerprints,
}
GROUP_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "status": _status,
    "groupKey": _rarely(
        st.integers() | st.sampled_from([11400867398394113390, 2**64, -(2**63), 0.5, True, ""]),
        texts.filter(bool),
        12,
    ),
}
GROUP_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "receiver": texts,
    "groupLabels": _string_map(),
    "commonLabels": _string_map(),
    "commonAnnotations": _string_map(),
    "externalURL": texts,
    "truncatedAlerts": _rarely(
        st.integers() | st.sampled_from(["3", 3.0, 1e2, True, 2**63 - 1, 2**63, 2**64, -1, -0.0]),
        st.integers(0, 5),
        5,
    ),
}


def bodies(
    version: st.SearchStrategy[Any],
    alert_fields: dict[str, st.SearchStrategy[Any]],
    alert_optional: dict[str, st.SearchStrategy[Any]],
    group_fields: dict[str, st.SearchStrategy[Any]],
    group_optional: dict[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[bytes]:
    """Whole bodies of one source's shape, as the bytes a sender posts."""
    alert = _fields(alert_fields, alert_optional)
    alerts = _rarely(st.lists(alert, max_size=1), st.lists(alert, min_size=1, max_size=3), 10)
    group = _fields({**group_fields, "version": version, "alerts": alerts}, group_optional)
    return st.tuples(group, st.booleans()).map(lambda pair: write(pair[0], pair[1]).encode())


_numbers = (
    st.floats(allow_nan=False) | st.integers() | st.sampled_from([-0, -0.0, 1e308, 2**64, 10**30, 1e-320])
)
# What a Grafana can send: Go's encoder refuses ±Inf (json.dumps would write "Infinity").
_finite_numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.sampled_from([-0, -0.0, 1e308, 2**64, 10**30, 1e-320])
)
GRAFANA_ALERT_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    **ALERT_OPTIONAL,
    "silenceURL": texts,
    "dashboardURL": texts,
    "panelURL": texts,
    "imageURL": texts,
    "values": st.lists(st.tuples(texts, _rarely(any_json, _numbers, 30)), max_size=3).map(Obj),
    "valueString": texts,
    "ruleUID": texts,
    "orgId": st.integers(0, 3),
}
GRAFANA_GROUP_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    **GROUP_OPTIONAL,
    "orgId": _rarely(st.integers() | st.sampled_from(["1", 1.0, 2**63, 2**64]), st.integers(0, 3), 5),
    "title": texts,
    "message": texts,
    "state": st.sampled_from(["alerting", "ok"]),
    "appVersion": st.just("11.2.0"),
}

grafana_bodies = bodies(
    _rarely(st.sampled_from([1, "4", None]), st.just("1"), 20),
    ALERT_FIELDS,
    GRAFANA_ALERT_OPTIONAL,
    GROUP_FIELDS,
    GRAFANA_GROUP_OPTIONAL,
)

alertmanager_bodies = bodies(
    _rarely(st.sampled_from([4, "1", "4 "]), st.just("4"), 20),
    ALERT_FIELDS,
    ALERT_OPTIONAL,
    GROUP_FIELDS,
    GROUP_OPTIONAL,
)


@st.composite
def damaged(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> bytes:
    """A body with one byte replaced (invalid UTF-8, a control character, a stray quote)
    or cut short."""
    body = draw(bodies)
    at = draw(st.integers(0, len(body) - 1))
    if draw(st.booleans()):
        return body[:at]
    return body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x01", b'"', b"\\", b"9"])) + body[at + 1 :]


def _valid_alert() -> st.SearchStrategy[dict[str, Any]]:
    labels = st.dictionaries(texts, texts, max_size=5)
    return st.fixed_dictionaries(
        {"status": st.sampled_from(["firing", "resolved"]), "labels": labels, "startsAt": go_times},
        optional={
            "annotations": labels,
            "endsAt": go_times | st.just("0001-01-01T00:00:00Z"),
            "generatorURL": texts,
            "fingerprint": _fingerprints,
        },
    )


valid_alertmanager_messages = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "status": st.sampled_from(["firing", "resolved"]),
        "groupKey": texts.filter(bool),
        "alerts": st.lists(_valid_alert(), min_size=1, max_size=4),
    },
    optional={
        "receiver": texts,
        "groupLabels": st.dictionaries(texts, texts, max_size=3),
        "commonLabels": st.dictionaries(texts, texts, max_size=3),
        "commonAnnotations": st.dictionaries(texts, texts, max_size=3),
        "externalURL": texts,
        "truncatedAlerts": st.integers(0, 2**63 - 1),
    },
)
valid_alertmanager_bodies = valid_alertmanager_messages.map(
    lambda data: json.dumps(data, ensure_ascii=False).encode()
)

# Values that some field takes and another refuses, or one parser takes and another might not.
odd_values = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "3",
            3.0,
            1e2,
            -1,
            -0.0,
            2**63 - 1,
            2**63,
            2**64,
            True,
            None,
            "",
            "Firing",
            "4",
            11400867398394113390,
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:00:00-01:00",
            "9999-12-30T23:00:00-01:00",
            "9999-12-31T00:00:00Z",
            "2026-11-29",
            1764381930,
            "1764381930",
            {},
            [],
            {"a": 1},
            {"a": None},
            ["a"],
        ]
    )
    | time_texts
    | any_json,
)


@st.composite
def one_field_off(
    draw: st.DrawFn, messages: st.SearchStrategy[dict[str, Any]], grafana: bool = False
) -> bytes:
    """A valid message with one field (of the group or of an alert) replaced by an odd
    value, or removed, or added (known or not): each rule on its own."""
    data = draw(messages)
    alerts = data["alerts"]
    group_names = [
        *GROUP_FIELDS,
        *(GRAFANA_GROUP_OPTIONAL if grafana else GROUP_OPTIONAL),
        "version",
        "alerts",
    ]
    alert_names = [*ALERT_FIELDS, *(GRAFANA_ALERT_OPTIONAL if grafana else ALERT_OPTIONAL)]
    target, names = draw(
        st.sampled_from([(data, group_names), (alerts[draw(st.integers(0, len(alerts) - 1))], alert_names)])
    )
    name = draw(st.sampled_from([*names, "x"]))
    if draw(st.integers(0, 9)) == 5:
        target.pop(name, None)
    else:
        target[name] = draw(odd_values)
    return json.dumps(data, ensure_ascii=draw(st.booleans())).encode()


@st.composite
def valid_grafana_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Alertmanager message made a Grafana unified one: version 1, its group
    and alert fields, values of every numeric shape."""
    data = draw(valid_alertmanager_messages)
    data["version"] = "1"
    data.update(
        draw(st.fixed_dictionaries({}, optional={"orgId": st.integers(0, 9), "title": texts, "state": texts}))
    )
    for alert in data["alerts"]:
        alert.update(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "values": st.dictionaries(texts, _finite_numbers, max_size=3) | st.none(),
                        "valueString": texts,
                        "dashboardURL": texts,
                        "silenceURL": texts,
                        "ruleUID": texts,
                        "orgId": st.integers(0, 9),
                    },
                )
            )
        )
    return data
