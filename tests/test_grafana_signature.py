"""Grafana's webhook HMAC: hex HMAC-SHA256 of the body, or of ``<timestamp>:<body>``."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from alertbridge.sources.grafana_signature import SignatureError, sign, verify_signature

# RFC-style known answer: HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog").
FOX = b"The quick brown fox jumps over the lazy dog"
FOX_MAC = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
NOW = 1_764_428_400.0  # any fixed instant
BODY = b'{"version":"1","orgId":1}'


def test_known_answer() -> None:
    assert sign("key", FOX) == FOX_MAC
    verify_signature("key", FOX, {"X-Grafana-Alerting-Signature": FOX_MAC}, NOW)


def test_timestamp_is_signed_as_prefix_with_a_colon() -> None:
    expected = hmac.new(b"s3cret", b"1764428400:" + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", BODY, "1764428400") == expected
    headers = {"X-Grafana-Alerting-Signature": expected, "X-Grafana-Alerting-Timestamp": "1764428400"}
    verify_signature("s3cret", BODY, headers, NOW)


def test_header_names_and_hex_case_do_not_matter() -> None:
    verify_signature("key", FOX, {"x-grafana-alerting-signature": FOX_MAC.upper()}, NOW)
    verify_signature("key", FOX, {"X-GRAFANA-ALERT-SIGNATURE": f" {FOX_MAC} "}, NOW)


@pytest.mark.parametrize(
    ("offset", "ok"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_skew_window(offset: int, ok: bool) -> None:
    timestamp = str(int(NOW) - offset)
    headers = {
        "X-Grafana-Alerting-Signature": sign("k", BODY, timestamp),
        "X-Grafana-Alerting-Timestamp": timestamp,
    }
    if ok:
        verify_signature("k", BODY, headers, NOW)
    else:
        with pytest.raises(SignatureError, match="more than 300 s is refused"):
            verify_signature("k", BODY, headers, NOW)


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({}, "missing X-Grafana-Alerting-Signature"),
        ({"X-Grafana-Alerting-Signature": ""}, "does not match"),
        ({"X-Grafana-Alerting-Signature": "sha256=" + FOX_MAC}, "does not match"),
        ({"X-Grafana-Alerting-Signature": "é" * 64}, "does not match"),
        (
            {"X-Grafana-Alerting-Signature": FOX_MAC, "X-Grafana-Alerting-Timestamp": "-5"},
            "not a Unix timestamp",
        ),
        (
            {"X-Grafana-Alerting-Signature": FOX_MAC, "X-Grafana-Alerting-Timestamp": "١٢٣"},
            "not a Unix timestamp",
        ),
        (
            {"X-Grafana-Alerting-Signature": FOX_MAC, "X-Grafana-Alerting-Timestamp": "9" * 40},
            "not a Unix timestamp",
        ),
        # Signed without the timestamp although one was sent: the hint names the header we read.
        (
            {"X-Grafana-Alerting-Signature": FOX_MAC, "X-Grafana-Alerting-Timestamp": str(int(NOW))},
            "does not match",
        ),
    ],
)
def test_rejections(headers: dict[str, str], match: str) -> None:
    with pytest.raises(SignatureError, match=match) as exc:
        verify_signature("key", FOX, headers, NOW)
    assert "\n" not in str(exc.value)
    assert FOX_MAC not in str(exc.value)


def test_hint_about_the_timestamp_header_when_unsigned_mismatch() -> None:
    with pytest.raises(SignatureError, match="it must be X-Grafana-Alerting-Timestamp"):
        verify_signature("key", FOX, {"X-Grafana-Alerting-Signature": "0" * 64}, NOW)


def test_empty_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="empty"):
        verify_signature("", FOX, {"X-Grafana-Alerting-Signature": sign("", FOX)}, NOW)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_signature("key", FOX, {"X-Grafana-Alerting-Signature": FOX_MAC}, NOW)
    assert calls == [(FOX_MAC.encode(), FOX_MAC.encode())]
