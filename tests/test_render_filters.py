"""Template filters: pure functions, tested without Jinja."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.render import filters

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _alert(labels: dict[str, str]) -> Alert:
    return Alert(
        status=Status.FIRING,
        labels=MappingProxyType(labels),
        annotations=MappingProxyType({}),
        starts_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        ends_at=None,
        fingerprint="f",
    )


def _group(external_url: str, alert: Alert) -> AlertGroup:
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key="k",
        alerts=(alert,),
        external_url=external_url,
    )


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (
            datetime(2026, 11, 29, 12, 8, 44, tzinfo=UTC),
            filters.DEFAULT_TIME_FORMAT,
            "2026-11-29 20:08:44",
        ),
        # Crosses midnight into the next local day.
        (
            datetime(2026, 11, 29, 16, 30, tzinfo=UTC),
            filters.DEFAULT_TIME_FORMAT,
            "2026-11-30 00:30:00",
        ),
        (datetime(2026, 11, 29, 12, 8, 44, tzinfo=UTC), "%H:%M", "20:08"),
        # An offset other than UTC converts too.
        (datetime(2026, 11, 29, 9, 0, tzinfo=ZoneInfo("Europe/Berlin")), "%H:%M", "16:00"),
        # Naive is taken as UTC, never as local time.
        (datetime(2026, 11, 29, 12, 8, 44), filters.DEFAULT_TIME_FORMAT, "2026-11-29 20:08:44"),
    ],
)
def test_localtime(value: datetime, fmt: str, expected: str) -> None:
    assert filters.localtime(value, SHANGHAI, fmt) == expected


@pytest.mark.parametrize(
    ("delta", "language", "expected"),
    [
        (timedelta(hours=3, minutes=5, seconds=9), "zh", "3小时5分"),
        (timedelta(hours=3, minutes=5, seconds=9), "en", "3h 5m"),
        (timedelta(days=2, hours=1), "zh", "2天1小时"),
        (timedelta(seconds=61), "en", "1m 1s"),
        (timedelta(0), "zh", "0秒"),
    ],
)
def test_humanize_duration(delta: timedelta, language: str, expected: str) -> None:
    assert filters.humanize_duration(delta, language) == expected


def test_since_measures_start_to_end() -> None:
    start = datetime(2026, 11, 29, 12, 8, 44, tzinfo=UTC)
    assert filters.since(start, start + timedelta(hours=3, minutes=5), "zh") == "3小时5分"
    assert filters.since(start, start + timedelta(minutes=1, seconds=2), "en") == "1m 2s"
    # Clock skew between Prometheus and us must not produce "-5s".
    assert filters.since(start, start - timedelta(seconds=5), "en") == "0s"
    # Mixed naive/aware input does not raise.
    assert filters.since(start.replace(tzinfo=None), start + timedelta(minutes=1), "en") == "1m"


def test_only_and_without_return_sorted_pairs() -> None:
    labels = {"severity": "critical", "alertname": "HighCPU", "job": "node", "instance": "a:1"}
    assert filters.only(labels, "job", "alertname", "missing") == [
        ("alertname", "HighCPU"),
        ("job", "node"),
    ]
    assert filters.without(labels, "alertname", "severity") == [
        ("instance", "a:1"),
        ("job", "node"),
    ]
    assert filters.without(labels) == sorted(labels.items())
    assert filters.only(labels) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain 中文 text", "plain 中文 text"),
        ("node_exporter", "node_exporter"),
        ("**bold** `code`", "＊＊bold＊＊ ｀code｀"),
        ("[click](http://evil)", "［click］(http://evil)"),
        ('<font color="info">x</font>', '＜font color="info">x＜/font>'),
        ("<@zhangsan>", "＜@zhangsan>"),
        ("back\\slash", "back\\slash"),
        ("line1\n# heading\r\n> quote", "line1 # heading > quote"),
        ("a\n\n  b", "a b"),
        ("a\u2028b", "a b"),
        (42, "42"),
    ],
)
def test_md_escape(value: object, expected: str) -> None:
    assert filters.md_escape(value) == expected


@given(st.text())
def test_md_escape_leaves_no_markup_and_no_line_break(value: str) -> None:
    escaped = filters.md_escape(value)
    assert not any(ch in escaped for ch in "\r\n\u2028\u2029\x85\v\f")
    # No markup character is left; each became its full-width look-alike.
    assert re.search(r"[`*\[\]<]", escaped) is None
    assert len(escaped) == len(filters.oneline(value))


def test_oneline_folds_line_breaks() -> None:
    long_spaces = " " * 200_000 + "x"
    assert filters.oneline(long_spaces) == long_spaces  # linear, not quadratic, in runs of spaces
    assert filters.oneline("a\n b\r\n\nc") == "a b c"
    assert filters.oneline("a \t\n\t b") == "a \t b"  # only what follows a break goes
    assert filters.oneline("no breaks") == "no breaks"


def test_md_url_keeps_links_intact() -> None:
    assert (
        filters.md_url("http://x/graph?g0.expr=rate(up[5m]) > 0")
        == "http://x/graph?g0.expr=rate%28up%5B5m%5D%29%20%3E%200"
    )
    assert filters.md_url("javascript:alert(1)") == ""


def test_silence_matchers_quote_values_and_sort() -> None:
    labels = {
        "job": "node",
        "alertname": "HighCPU",
        "msg": 'say "hi"\\ now\n',
        "team.name": "payments",
    }
    assert filters.silence_matchers(labels) == (
        '{alertname="HighCPU",job="node",msg="say \\"hi\\"\\\\ now\\n","team.name"="payments"}'
    )


def test_silence_url_prefills_alertmanager_form() -> None:
    alert = _alert({"alertname": "HighCPU", "instance": "web-1:9100", "team": "支付"})
    url = filters.silence_url(alert, _group("http://am.example.org:9093/", alert))
    prefix = "http://am.example.org:9093/#/silences/new?filter="
    assert url.startswith(prefix)
    query = url.removeprefix(prefix)
    assert re.fullmatch(r"[A-Za-z0-9%._~-]+", query)  # fully percent-encoded
    assert unquote(query) == '{alertname="HighCPU",instance="web-1:9100",team="支付"}'


def test_silence_url_is_empty_without_external_url() -> None:
    alert = _alert({"alertname": "HighCPU"})
    assert filters.silence_url(alert, _group("", alert)) == ""


@settings(max_examples=100)
@given(st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5))
def test_silence_url_is_one_token(labels: dict[str, str]) -> None:
    # A space or newline would end the link in both text and markdown messages.
    alert = _alert(labels)
    url = filters.silence_url(alert, _group("http://am:9093", alert))
    assert not any(ch.isspace() for ch in url)
    assert "(" not in url and ")" not in url
