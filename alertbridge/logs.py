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
from typing import Any, TextIO

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
            text = text.replace(secret, MASK)
        return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
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


def typed_fields(fields: dict[str, str]) -> dict[str, str | int | float]:
    """The fields as JSON values: numbers as numbers, absent values (``None``, empty) left out."""
    typed: dict[str, str | int | float] = {}
    for key, value in fields.items():
        if value in _ABSENT:
            continue
        if key not in _TEXT_KEYS and _NUMBER.match(value):
            typed[key] = float(value) if "." in value else int(value)
        else:
            typed[key] = value
    return typed


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, the fields, the whole message."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event, fields = message_fields(message)
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if event is not None:
            document["event"] = event
            document.update(typed_fields(fields))
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
