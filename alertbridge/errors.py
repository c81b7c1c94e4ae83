"""The exception hierarchy.

Errors are raised where a problem is detected and handled in one place: the
web layer maps them to HTTP answers, the dispatcher to retry or dead-letter.

    AlertbridgeError
     ├── ConfigError            bad configuration; names file and key path
     ├── PayloadError           a webhook body we cannot accept (HTTP 400)
     ├── StoreError             the store cannot commit or read (HTTP 503)
     ├── TemplateError          a template fails to compile or render
     └── DeliveryError          sending one message failed
          ├── TransientDeliveryError   worth retrying with backoff
          └── PermanentDeliveryError   retrying cannot help: dead-letter now

WeCom client errors (``errors`` in the WeCom messenger package) subclass the two delivery
kinds, so the dispatcher never needs to know about errcodes.
"""

from __future__ import annotations

from collections.abc import Sequence


class AlertbridgeError(Exception):
    """Base class of every error alertbridge raises on purpose."""


class ConfigError(AlertbridgeError):
    """One or more problems in a configuration file.

    Each problem is ``(key_path, message)``; ``str()`` lists them one per line
    as ``FILE: key.path: message`` so an operator can jump straight to it.
    """

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = []
        for key, message in self.problems:
            lines.append(f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}")
        return "\n".join(lines)


class PayloadError(AlertbridgeError):
    """A webhook body that is not a valid payload of its source."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"invalid {source} payload: {problem}")


class StoreError(AlertbridgeError):
    """The durable store could not complete an operation."""


class TemplateError(AlertbridgeError):
    """A template could not be loaded, compiled or rendered."""

    def __init__(self, template: str, problem: str, lineno: int | None = None) -> None:
        self.template = template
        self.problem = problem
        self.lineno = lineno
        where = f"{template}:{lineno}" if lineno else template
        super().__init__(f"template {where}: {problem}")


class DeliveryError(AlertbridgeError):
    """Sending a message failed.

    ``reason`` is a short fixed word (``server_error``, ``rate_limited``,
    ``content_too_long`` …) safe to use as a metric label; the message is for
    humans and must never contain a secret.
    """

    retryable: bool = False
    # True when the message's content is what was refused (WeCom's 40033
    # invalid characters …), not the target: the dispatcher then splits the
    # message to isolate what cannot be sent instead of dropping all of it.
    message_at_fault: bool = False

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """A failure that may go away: retry with backoff until the max age."""

    retryable = True

    def __init__(self, message: str, *, reason: str, min_delay: float = 0.0) -> None:
        super().__init__(message, reason=reason)
        # Rate limits tell us how long to stay away; honour at least this.
        self.min_delay = min_delay


class PermanentDeliveryError(DeliveryError):
    """A failure that retrying cannot fix: dead-letter the message."""
