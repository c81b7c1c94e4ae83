"""One warning per refused webhook, rate-limited so a flood cannot flood the logs.

A refused webhook (400, 401, 404, 413, 415) is what an operator needs to see
when Alertmanager or Grafana is misconfigured — a wrong token, a wrong
receiver name — and also what a scanner or a broken sender produces by the
thousand. So each (remote address, outcome) pair gets at most one line per
``interval``; the refusals held back meanwhile are counted and reported as
``suppressed=N`` on that pair's next line, or at shutdown by ``flush``.

The state outlives config reloads (the app owns one ``RefusalLog``) and is
bounded: past ``max_keys`` pairs the quietest are forgotten, counted in one
line, so many source addresses cannot grow memory without limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL = 10.0
MAX_KEYS = 4096
_NAME_CHARS = 64
_REASON_CHARS = 300


@dataclass(slots=True)
class _Seen:
    logged_at: float
    suppressed: int = 0


class RefusalLog:
    """Logs ``webhook_refused`` lines, at most one per (remote, outcome) per ``interval`` seconds."""

    def __init__(
        self,
        *,
        interval: float = REFUSAL_LOG_INTERVAL,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._seen: dict[tuple[str, str], _Seen] = {}

    def refused(
        self, *, source: str, receiver: str, remote: str, status: int, outcome: str, reason: str
    ) -> None:
        """Log one refusal, or count it when its (remote, outcome) pair logged one recently.

        ``reason`` is the answer's text, which never holds a credential;
        ``receiver`` is the name from the URL, shortened and made printable.
        """
        now = self._clock()
        key = (remote, outcome)
        seen = self._seen.get(key)
        if seen is not None and now - seen.logged_at < self._interval:
            seen.suppressed += 1
            return
        suppressed = seen.suppressed if seen is not None else 0
        self._seen.pop(key, None)  # re-inserted last: the dict stays in logging order
        self._seen[key] = _Seen(now)
        self._forget_beyond_limit()
        log.warning(
            "webhook_refused source=%s receiver=%s remote=%s status=%d outcome=%s suppressed=%d reason=%s",
            source,
            _printable(receiver),
            remote,
            status,
            outcome,
            suppressed,
            "".join(c if c.isprintable() else "?" for c in reason[:_REASON_CHARS]),
        )

    @property
    def pairs(self) -> int:
        """How many (remote, outcome) pairs are remembered (bounded by ``max_keys``)."""
        return len(self._seen)

    def flush(self) -> None:
        """Report every count not yet logged (at shutdown), so none is lost."""
        for (remote, outcome), seen in self._seen.items():
            if seen.suppressed:
                log.warning(
                    "webhook_refused_suppressed remote=%s outcome=%s suppressed=%d",
                    remote,
                    outcome,
                    seen.suppressed,
                )
        self._seen.clear()

    def _forget_beyond_limit(self) -> None:
        if len(self._seen) <= self._max_keys:
            return
        # Oldest lines first (insertion order); forget half, so this runs rarely.
        forget = list(self._seen)[: len(self._seen) - self._max_keys // 2]
        lost = sum(self._seen.pop(key).suppressed for key in forget)
        log.warning("webhook_refusals_forgotten pairs=%d suppressed=%d", len(forget), lost)


def _printable(name: str) -> str:
    """A URL's receiver name as a log value: no control characters, no spaces, bounded."""
    cleaned = "".join(c if c.isprintable() and not c.isspace() else "?" for c in name[:_NAME_CHARS])
    return cleaned + ("…" if len(name) > _NAME_CHARS else "")
