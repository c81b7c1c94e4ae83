"""Structured logs: JSON lines with an event and fields, one redaction point, a request id end to end."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.config import parse_config
from alertbridge.errors import ConfigError
from alertbridge.logs import JsonFormatter, SecretRedactor, configure_logging, message_fields
from tests.harness import AlertbridgeProcess, wait_until

FIRING = (Path(__file__).parent / "data" / "alertmanager" / "firing.json").read_bytes()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_message_fields_split_the_event_and_keep_spaces_in_the_last_value() -> None:
    assert message_fields(
        "webhook_not_stored receiver=ops request_id=ab12 error=database or disk is full"
    ) == (
        "webhook_not_stored",
        {"receiver": "ops", "request_id": "ab12", "error": "database or disk is full"},
    )
    # Not our convention (uvicorn, a library): no event, the message stays whole.
    assert message_fields("Application startup complete.") == (None, {})
    # A field may not overwrite the document's own keys.
    assert message_fields("odd level=x message=y ok=1") == ("odd", {"ok": "1"})


def test_json_lines_carry_fields_and_are_redacted(restore_root_logger: None) -> None:
    stream = io.StringIO()  # not a terminal: "auto" means JSON
    configure_logging(["hunter2-secret"], stream, "debug", "auto")
    log = logging.getLogger("alertbridge.test")
    log.info("delivery_retry delivery=%d request_id=%s error=%s", 7, "ab12", "token hunter2-secret refused")
    try:
        raise RuntimeError("boom hunter2-secret")
    except RuntimeError:
        log.exception("delivery_crashed deliveries=%s", "7")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["delivery_retry", "delivery_crashed"]
    first = lines[0]
    assert (first["level"], first["logger"], first["delivery"], first["request_id"]) == (
        "info",
        "alertbridge.test",
        7,
        "ab12",
    )
    assert first["error"] == "token *** refused"
    assert first["time"].endswith("+00:00")
    assert "RuntimeError: boom ***" in lines[1]["exception"]
    assert "hunter2-secret" not in stream.getvalue()


def test_json_numbers_are_numbers_and_absent_values_are_left_out(restore_root_logger: None) -> None:
    stream = io.StringIO()
    configure_logging([], stream, "info", "json")
    log = logging.getLogger("alertbridge.test")
    log.info(
        "delivery_retry delivery=%d attempt=%d in=%.1f request_id=%s user=%s silence=%s error=%s",
        7,
        3,
        1.5,
        "0123456789",
        "10086",
        None,
        "timeout",
    )
    log.info("message_sent delivery=%d msgid=%s part=%d", 8, "", 1)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["delivery"], first["attempt"], first["in"]) == (7, 3, 1.5)
    # Identifiers stay text even when they are all digits: one type per key.
    assert (first["request_id"], first["user"], first["error"]) == ("0123456789", "10086", "timeout")
    assert "silence" not in first
    assert "None" not in [value for key, value in first.items() if key != "message"]
    assert "msgid" not in second and second["part"] == 1


def test_json_fields_come_from_the_arguments_not_from_parsing_the_line(restore_root_logger: None) -> None:
    stream = io.StringIO()
    configure_logging(["hunter2-secret"], stream, "info", "json")
    log = logging.getLogger("alertbridge.test")
    # A value that itself reads as " key=value" stays one value...
    log.info("%s user=%s reason=%s", "command_refused", "bob", "bad input to=all")
    # ...unless it must be masked: then the masked line is what is read.
    log.info("command_refused user=%s reason=%s", "bob", "hunter2-secret")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["event"], first["user"], first["reason"]) == ("command_refused", "bob", "bad input to=all")
    assert "to" not in first
    assert (second["reason"], second["message"]) == ("***", "command_refused user=bob reason=***")


_KEYS = st.sampled_from(
    ["delivery", "request_id", "user", "attempt", "in", "error", "status", "count", "level"]
)
_VALUES = st.one_of(
    st.none(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KEYS, st.sampled_from(["%s", "%d", "%.1f"]), _VALUES), max_size=6))
def test_fields_from_the_arguments_equal_the_fields_read_back_from_the_line(
    fields: list[tuple[str, str, object]],
) -> None:
    """The fast path (fields from the call's arguments) writes what parsing the
    formatted line writes, for every line the parser reads unambiguously."""
    usable = []
    for key, spec, value in fields:
        if spec != "%s" and not isinstance(value, int | float):
            spec = "%s"
        text = spec % (value,)
        if "=" in text or (not text and usable):  # the parser splits at " key="
            continue
        usable.append((key, spec, value))
    fmt = " ".join(["event_x", *(f"{key}={spec}" for key, spec, _ in usable)])
    args = tuple(value for _, _, value in usable)
    formatter = JsonFormatter()
    fast = logging.LogRecord("alertbridge.test", logging.INFO, "", 0, fmt, args, None)
    assert SecretRedactor([]).filter(fast) and hasattr(fast, "event_fields")
    slow = logging.LogRecord("alertbridge.test", logging.INFO, "", 0, fmt % args, None, None)
    slow.created = fast.created
    assert json.loads(formatter.format(fast)) == json.loads(formatter.format(slow))


def test_credentials_in_query_strings_are_masked_in_any_case() -> None:
    redactor = SecretRedactor([])
    assert redactor.redact("GET /gettoken?corpid=ww1&CorpSecret=abc&x=1") == (
        "GET /gettoken?corpid=ww1&CorpSecret=***&x=1"
    )
    assert redactor.redact("send?Access_Token=t0k3n") == "send?Access_Token=***"
    assert redactor.redact("webhook/send?key=693a91f6") == "webhook/send?key=***"
    assert (
        redactor.redact("webhook_accepted receiver=ops delivery=3")
        == "webhook_accepted receiver=ops delivery=3"
    )


def test_text_on_a_terminal_or_when_asked(restore_root_logger: None) -> None:
    terminal = Terminal()
    configure_logging([], terminal, "info", "auto")
    logging.getLogger("alertbridge.test").info("webhook_accepted receiver=ops")
    assert terminal.getvalue().rstrip().endswith("INFO alertbridge.test webhook_accepted receiver=ops")
    piped = io.StringIO()
    configure_logging([], piped, "warning", "text")
    logging.getLogger("alertbridge.test").info("hidden below the level")
    logging.getLogger("alertbridge.test").warning("shown")
    assert "hidden" not in piped.getvalue() and piped.getvalue().rstrip().endswith("shown")


def test_log_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"log": {"format": "xml"}}, {}, "alertbridge.toml")
    assert "alertbridge.toml: log.format:" in str(caught.value)


def test_a_webhooks_request_id_follows_it_into_the_outbox_and_the_send(tmp_path: Path) -> None:
    bridge = AlertbridgeProcess(tmp_path, '[receivers.console]\nchannel = "console"\n').start()
    try:
        answer = httpx.post(
            f"{bridge.base_url}/alertmanager/console",
            content=FIRING,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200
        request_id = answer.json()["request_id"]
        assert answer.headers["X-Request-Id"] == request_id
        wait_until(lambda: "message_sent" in bridge.stderr(), 10, "the send")
    finally:
        bridge.stop()
    lines = [json.loads(line) for line in bridge.stderr().splitlines()]
    by_event = {line.get("event"): line for line in lines}
    assert by_event["webhook_accepted"]["request_id"] == request_id
    assert by_event["message_sent"]["request_id"] == request_id
    assert by_event["message_sent"]["delivery"] == by_event["webhook_accepted"]["delivery"]
    with sqlite3.connect(bridge.db_path) as db:
        assert db.execute("SELECT request_id FROM deliveries").fetchall() == [(request_id,)]
