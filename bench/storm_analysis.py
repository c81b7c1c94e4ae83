"""What the storm scenarios measure, from the fake WeCom's records (bench/README.md).

Which alerts are visible to every member and when, messages per member per
rolling minute, drops and repeats, and the drain bound: the least time the
messages sent to the member with the most content could take under WeCom's
byte and rate limits.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MEMBERS = tuple(f"member{i}" for i in range(1, 6))

# WeCom's limits (docs/wecom-api.md; alertbridge.testing.fake_wecom enforces them).
APP_CONTENT_LIMIT = 2048
PER_MINUTE = 30
PER_HOUR = 1000

_INSTANCE = re.compile(r"s\d{3}-\d{2}")


# ---- the bound -----------------------------------------------------------------


def earliest_send_times(count: int, per_minute: int = PER_MINUTE, per_hour: int = PER_HOUR) -> list[float]:
    """The earliest times (s after the first) ``count`` messages to one member can be
    accepted under WeCom's rolling limits: message k needs ``t[k] ≥ t[k-30] + 60``
    and ``t[k] ≥ t[k-1000] + 3600``; sending each as early as allowed is optimal."""
    times: list[float] = []
    for k in range(count):
        t = 0.0
        if k >= per_minute:
            t = max(t, times[k - per_minute] + 60.0)
        if k >= per_hour:
            t = max(t, times[k - per_hour] + 3600.0)
        times.append(t)
    return times


def messages_needed(content_bytes: int, limit: int = APP_CONTENT_LIMIT) -> int:
    """The fewest messages that can carry ``content_bytes`` of text (the byte limit)."""
    return max(1, math.ceil(content_bytes / limit))


def drain_bound(content_bytes: int, last_post_at: float) -> float:
    """Lower bound on the drain time of one member (see bench/README.md)."""
    needed = messages_needed(content_bytes)
    return max(last_post_at, earliest_send_times(needed)[-1])


# ---- analysis ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StormAnalysis:
    expected: int
    visible: int
    last_visible_at: float | None  # seconds after the storm start; None until all are visible
    max_per_minute: int
    per_member_accepted: Mapping[str, int]
    per_member_delivered: Mapping[str, int]
    per_member_bytes: Mapping[str, int]
    dropped: int
    # Alerts a member got in more than one delivered message (worst member): each should arrive once.
    repeated: int

    @property
    def visible_pct(self) -> float:
        return 100.0 * self.visible / self.expected if self.expected else 0.0


def max_in_window(times: Sequence[float], window: float = 60.0) -> int:
    """The most of ``times`` in any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def analyse(
    delivered: Iterable[Mapping[str, Any]],
    dropped: Iterable[Mapping[str, Any]],
    expected: set[str],
    start_wall: float,
) -> StormAnalysis:
    first_seen: dict[str, dict[str, float]] = defaultdict(dict)  # instance -> member -> time
    receipts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # member -> instance -> count
    accepted_times: dict[str, list[float]] = defaultdict(list)
    delivered_count: dict[str, int] = defaultdict(int)
    content_bytes: dict[str, int] = defaultdict(int)
    for message in delivered:
        at = float(message["timestamp"]) - start_wall
        content = message.get("content") or ""
        size = len(content.encode("utf-8"))
        instances = set(_INSTANCE.findall(content)) & expected
        for member in message.get("to_user") or ():
            accepted_times[member].append(at)
            delivered_count[member] += 1
            content_bytes[member] += size
            seen = first_seen
            for instance in instances:
                receipts[member][instance] += 1
                previous = seen[instance].get(member)
                if previous is None or at < previous:
                    seen[instance][member] = at
    dropped_count = 0
    for message in dropped:
        at = float(message["timestamp"]) - start_wall
        size = len((message.get("content") or "").encode("utf-8"))
        for member in message.get("to_user") or ():
            dropped_count += 1
            accepted_times[member].append(at)
            content_bytes[member] += size
    visible_times = [
        max(members.values())
        for instance, members in first_seen.items()
        if all(m in members for m in MEMBERS)
    ]
    visible = len(visible_times)
    return StormAnalysis(
        expected=len(expected),
        visible=visible,
        last_visible_at=max(visible_times) if visible == len(expected) and visible_times else None,
        max_per_minute=max((max_in_window(t) for t in accepted_times.values()), default=0),
        per_member_accepted={m: len(accepted_times.get(m, [])) for m in MEMBERS},
        per_member_delivered={m: delivered_count.get(m, 0) for m in MEMBERS},
        per_member_bytes={m: content_bytes.get(m, 0) for m in MEMBERS},
        dropped=dropped_count,
        repeated=max((sum(1 for n in counts.values() if n > 1) for counts in receipts.values()), default=0),
    )
