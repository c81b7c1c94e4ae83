"""Logging set-up with one redaction point.

Every record passes ``SecretRedactor`` before it is written: configured
secrets are replaced wherever they appear, and so are credentials in URL query
strings (``access_token=``, ``corpsecret=``, ``key=``) — the access token is
not in the config, and httpx puts URLs into its messages.

Messages follow one convention, ``event key=value key=value``, so the same
record reads well as text and becomes a JSON object with an ``event`` and
one field per key (``JsonFormatter``), for Loki or Elasticsearch to index.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, TextIO

import orjson

MASK = "***"
_QUERY_SECRET = re.compile(r"(?i)\b(access_token|corpsecret|key|secret)=([^&\s\"']+)")


class SecretRedactor(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def extend(self, secrets: Iterable[str]) -> None:
        merged = set(self._secrets) | {s for s in secrets if len(s) >= 4}
        self._secrets = sorted(merged, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        # Most lines carry no credential parameter: skip the regex for them.
        lowered = text.lower()
        if "token=" not in lowered and "secret=" not in lowered and "key=" not in lowered:
            return text
        return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if redacted == message:
            # Nothing to mask: the fields come from the arguments themselves,
            # so the JSON formatter need not parse the line back (Phase 10).
            fields = _fields_from_args(record.msg, record.args)
            if fields is not None:
                record.event_fields = fields
        record.msg = redacted
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_EVENT = re.compile(r"[a-z][a-z0-9_]*\Z")
_FIELD = re.compile(r"(?:^| )([a-z_][a-z0-9_]*)=")
_RESERVED = frozenset({"time", "level", "logger", "event", "message", "exception"})
# A value that reads as a number becomes a JSON number, so Loki and Elasticsearch
# can compare and sum it. Names and identifiers stay strings even when they are
# all digits (a request id, a user id, a receiver called "42"), so each key keeps
# one type from line to line.
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?\Z")
_TEXT_KEYS = frozenset(
    {"request_id", "task_id", "msgid", "silence", "silence_id", "user", "receiver", "receivers", "app", "key"}
    | {
        "alert",
        "version",
        "host",
        "channel",
        "source",
        "action",
        "status",
        "result",
        "reason",
        "error",
        "why",
    }
)
# What %s makes of a missing value; such a field is left out rather than logged as text.
_ABSENT = frozenset({"None", ""})


def message_fields(message: str) -> tuple[str | None, dict[str, str]]:
    """``webhook_accepted receiver=ops reason=disk is full`` → the event and its fields.

    A value runs to the next `` key=``, so the last one may contain spaces
    (reasons and errors come last by convention).
    """
    head, _, rest = message.partition(" ")
    if not _EVENT.match(head):
        return None, {}
    fields: dict[str, str] = {}
    marks = list(_FIELD.finditer(rest))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(rest)
        key = mark.group(1)
        if key not in _RESERVED:
            fields.setdefault(key, rest[mark.end() : end])
    return head, fields


_PLACEHOLDER = r"%[-#0 +]*[0-9]*(?:\.[0-9]+)?[sdifrx]"
_TEMPLATE_HEAD = re.compile(rf"(?:([a-z][a-z0-9_]*)|({_PLACEHOLDER}))(?= |\Z)")
_TEMPLATE_FIELD = re.compile(rf" ([a-z_][a-z0-9_]*)=({_PLACEHOLDER})(?= |\Z)")

# (event, or None when the first argument is the event) and the (key, placeholder)
# pairs; the key is None where the line's reader would skip the field (a reserved
# name, or a name already given earlier in the line).
_Template = tuple[str | None, tuple[tuple[str | None, str], ...]]


@lru_cache(maxsize=512)
def _template(fmt: str) -> _Template | None:
    """``"%s receiver=%s delivery=%d"`` → ``(None, (("receiver", "%s"), ("delivery", "%d")))``.

    Only a format that is exactly ``event key=%x key=%x…`` has one: anything
    else (literal text in a value, ``%%``) is left to ``message_fields``.
    Formats are constants in the code, so the cache stays small.
    """
    head = _TEMPLATE_HEAD.match(fmt)
    if head is None:
        return None
    fields: list[tuple[str | None, str]] = []
    named: set[str] = set()
    position = head.end()
    for mark in _TEMPLATE_FIELD.finditer(fmt, position):
        if mark.start() != position:
            return None
        key = mark.group(1)
        fields.append((None if key in _RESERVED or key in named else key, mark.group(2)))
        named.add(key)
        position = mark.end()
    if position != len(fmt):
        return None
    return head.group(1), tuple(fields)


def _fields_from_args(fmt: object, args: object) -> tuple[str, dict[str, str | int | float]] | None:
    """What ``typed_fields(message_fields(line))`` would make of the formatted line,
    taken from the arguments instead; None when the format is not ``event key=%x…``."""
    if not isinstance(fmt, str) or not isinstance(args, tuple):
        return None
    template = _template(fmt)
    if template is None:
        return None
    event, specs = template
    values = list(args)
    if event is None:
        event = str(values.pop(0)) if values else ""
        if not _EVENT.match(event):
            return None
    if len(values) != len(specs):
        return None
    typed: dict[str, str | int | float] = {}
    for (key, spec), value in zip(specs, values, strict=True):
        if key is None:
            continue
        if spec == "%d" and type(value) is int and key not in _TEXT_KEYS and -_INT_LIMIT < value < _INT_LIMIT:
            typed[key] = value  # what _typed would read back from str(value)
            continue
        text = value if spec == "%s" and type(value) is str else spec % (value,)
        if text not in _ABSENT:
            typed[key] = _typed(key, text)
    return event, typed


# Integers _NUMBER reads as numbers: up to 18 digits.
_INT_LIMIT: Final = 10**18


def _typed(key: str, value: str) -> str | int | float:
    """A number as a number, unless ``key`` names text."""
    if key not in _TEXT_KEYS and _NUMBER.match(value):
        return float(value) if "." in value else int(value)
    return value


def typed_fields(fields: dict[str, str]) -> dict[str, str | int | float]:
    """The fields as JSON values: numbers as numbers, absent values (``None``, empty) left out."""
    return {key: _typed(key, value) for key, value in fields.items() if value not in _ABSENT}


@lru_cache(maxsize=4)
def _second(whole: int) -> str:
    """``2026-12-06T20:00:33`` for a whole second since the epoch (UTC); a line
    repeats its predecessor's second, so this is formatted once a second."""
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _timestamp(created: float) -> str:
    """``created`` as ISO 8601 in UTC to the millisecond: ``2026-12-06T20:00:33.123+00:00``."""
    # Rounded to the microsecond first, as datetime.fromtimestamp rounds.
    whole = int(created)
    micros = round((created - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_second(whole)}.{micros // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, the fields, the whole message."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        parsed: tuple[str, dict[str, str | int | float]] | None = getattr(record, "event_fields", None)
        if parsed is not None:
            event: str | None = parsed[0]
            fields = parsed[1]
        else:
            event, text_fields = message_fields(message)
            fields = typed_fields(text_fields)
        document: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if event is not None:
            document["event"] = event
            document.update(fields)
        document["message"] = message
        if record.exc_text:
            document["exception"] = record.exc_text
        try:
            return orjson.dumps(document).decode("utf-8")
        except TypeError:  # a lone surrogate (from a client's bytes) that orjson refuses
            return json.dumps(document, ensure_ascii=False)


def configure_logging(secrets: Iterable[str], stream: TextIO, level: str, fmt: str) -> None:
    """Log to ``stream``: JSON lines, or text (``fmt="auto"``: JSON unless ``stream`` is a terminal)."""
    # Nothing printed names the calling file, line, thread or process: leave
    # them out of every record rather than look them up per line (the
    # logging HOWTO's "Optimization"; findCaller walks the stack each time).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream)
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    # Redaction is a filter on the handler, so it runs before any formatter.
    handler.addFilter(SecretRedactor(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and WeCom URLs carry the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def extend_redaction(secrets: Iterable[str]) -> None:
    """Also mask ``secrets`` from now on (a reloaded config may bring new ones;
    the old ones stay masked too, as they may still appear in flight)."""
    for handler in logging.getLogger().handlers:
        for log_filter in handler.filters:
            if isinstance(log_filter, SecretRedactor):
                log_filter.extend(secrets)
