"""Durations as operators write them: ``90s``, ``5m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m``-style text (Prometheus' syntax) into a timedelta.

    Raises:
        ValueError: the text is empty, has unknown units or trailing garbage.
    """
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    pos, seconds = 0, 0.0
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 2h, 1d, 1h30m)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta, language: str = "en") -> str:
    """A short human form, at most two units: ``3h 5m`` / ``3小时5分``."""
    total = max(0, int(delta.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if language == "zh":
        names = ("天", "小时", "分", "秒")
        sep = ""
    else:
        names = ("d", "h", "m", "s")
        sep = " "
    parts = [f"{v}{n}" for v, n in zip((days, hours, minutes, seconds), names, strict=True) if v]
    return sep.join(parts[:2]) if parts else f"0{names[3]}"
