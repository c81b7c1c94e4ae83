"""Pure helpers: durations, backoff, webhook auth, log redaction."""

from __future__ import annotations

import base64
import io
import logging
from datetime import timedelta

import pytest
from pydantic import SecretStr

from alertbridge.config import BasicAuthConfig, WebhookAuthConfig
from alertbridge.delivery.backoff import retry_delay
from alertbridge.duration import format_duration, parse_duration
from alertbridge.logs import SecretRedactor, configure_logging
from alertbridge.web.auth import WebhookAuthenticator


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("500ms", 0.5), (" 2H ", 7200)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "1h 30m", "-5m", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=3, minutes=5, seconds=9)) == "3h 5m"
    assert format_duration(timedelta(hours=3, minutes=5), "zh") == "3小时5分"
    assert format_duration(timedelta(days=2, seconds=7)) == "2d 7s"
    assert format_duration(timedelta(0), "zh") == "0秒"
    assert format_duration(timedelta(seconds=-5)) == "0s"


def test_backoff_grows_caps_and_jitters() -> None:
    initial, maximum = timedelta(seconds=1), timedelta(seconds=60)
    top = [
        retry_delay(n, initial=initial, maximum=maximum, rand=lambda: 1.0).total_seconds()
        for n in range(1, 10)
    ]
    assert top == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    low = retry_delay(3, initial=initial, maximum=maximum, rand=lambda: 0.0).total_seconds()
    assert low == 2.0  # half of the base: jitter spreads retries of a burst
    assert (
        retry_delay(1, initial=initial, maximum=maximum, min_delay=30, rand=lambda: 0.0).total_seconds() == 30
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_webhook_auth() -> None:
    open_door = WebhookAuthenticator(None)
    assert open_door.allows(None)

    bearer = WebhookAuthenticator(WebhookAuthConfig(bearer_token=SecretStr("tok-123")))
    assert bearer.allows("Bearer tok-123")
    assert bearer.allows("bearer  tok-123 ")
    assert not bearer.allows(None)
    assert not bearer.allows("Bearer tok-1234")
    assert not bearer.allows("Basic tok-123")

    both = WebhookAuthenticator(
        WebhookAuthConfig(
            bearer_token=SecretStr("tok-123"),
            basic_auth=BasicAuthConfig(username="am", password=SecretStr("pw")),
        )
    )
    assert both.allows(basic("am", "pw"))
    assert both.allows("Bearer tok-123")
    assert not both.allows(basic("am", "wrong"))
    assert not both.allows(basic("other", "pw"))
    assert not both.allows("Basic !!!notbase64")
    assert not both.allows("Basic " + base64.b64encode(b"no-colon").decode())


def test_redactor_masks_configured_secrets_and_url_credentials() -> None:
    redactor = SecretRedactor(["corp-secret-value", "robot-key-value"])
    text = redactor.redact(
        "GET https://x/cgi-bin/gettoken?corpid=ww1&corpsecret=corp-secret-value "
        "POST /cgi-bin/message/send?access_token=TOKEN123&debug=1 key=robot-key-value"
    )
    assert "corp-secret-value" not in text and "TOKEN123" not in text and "robot-key-value" not in text
    assert "corpid=ww1" in text and "debug=1" in text


def test_configured_logging_redacts_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(["hunter2-secret"], stream, "info", "auto")
        log = logging.getLogger("alertbridge.test")
        log.info("secret in args: %s", "hunter2-secret")
        try:
            raise RuntimeError("boom hunter2-secret")
        except RuntimeError:
            log.exception("failed at https://h/send?access_token=abc.def")
        logging.getLogger("httpx").info("HTTP Request: POST https://h/send?access_token=abc")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    output = stream.getvalue()
    assert "secret in args: ***" in output
    assert "hunter2-secret" not in output
    assert "abc.def" not in output
    assert "boom ***" in output
    # httpx's request log (URLs with tokens) is silenced.
    assert "HTTP Request" not in output
