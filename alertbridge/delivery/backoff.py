"""Retry delays: exponential with jitter, capped.

Jitter spreads retries of many messages that failed together (a WeCom outage)
so they do not all come back in the same second.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta


def retry_delay(
    attempt: int,
    *,
    initial: timedelta,
    maximum: timedelta,
    min_delay: float = 0.0,
    rand: Callable[[], float],
) -> timedelta:
    """Delay before retry number ``attempt`` (1 = first retry).

    The base doubles per attempt up to ``maximum``; the result is drawn from
    [base/2, base] and never below ``min_delay`` seconds (what a rate limit
    asked for).
    """
    base = min(maximum.total_seconds(), initial.total_seconds() * 2 ** max(0, attempt - 1))
    jittered = base * (0.5 + 0.5 * rand())
    return timedelta(seconds=max(jittered, min_delay))
