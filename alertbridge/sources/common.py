"""What every source parser shares: JSON loading, one-line errors, time and flavour checks.

Alertmanager and Grafana post to different endpoints, and a body sent to the
wrong one is the most likely mistake; ``grafana_flavour`` is the one
definition of "this is a Grafana body" both parsers use to name the right
endpoint in their error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from alertbridge.errors import PayloadError

GRAFANA_ELSEWHERE = "this is a Grafana payload; post it to /grafana/{receiver}"
ALERTMANAGER_ELSEWHERE = "this is an Alertmanager payload; post it to /alertmanager/{receiver}"

GrafanaFlavour = Literal["unified", "legacy"]


class Lenient(BaseModel):
    """A payload model: unknown fields are ignored so newer senders keep working."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def load_object(source: str, body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object.

    Raises:
        PayloadError: not JSON, or JSON but not an object.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(source, f"body is not valid JSON ({short(exc)})") from None
    if not isinstance(data, dict):
        raise PayloadError(source, "body must be a JSON object")
    return data


def grafana_flavour(data: Mapping[str, Any]) -> GrafanaFlavour | None:
    """Which Grafana webhook ``data`` is, or ``None`` if it is not one.

    Unified alerting (Grafana 8+) sends ``"version": "1"`` with ``orgId`` and
    ``state``; legacy dashboard alerting sends no ``version`` but ``ruleId``
    and ``evalMatches``. Alertmanager sends ``"version": "4"``.
    """
    version = data.get("version")
    if version == "1" and ("orgId" in data or "state" in data):
        return "unified"
    if version is None and ("ruleId" in data or "evalMatches" in data):
        return "legacy"
    return None


def aware(moment: datetime) -> datetime:
    # The senders always send an offset; a hand-written payload may not.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def open_end(moment: datetime | None) -> datetime | None:
    """``endsAt``, with Go's zero time (``0001-01-01T00:00:00Z``, "still firing") as ``None``."""
    return aware(moment) if moment is not None and moment.year > 1 else None


def first_error(exc: ValidationError) -> str:
    """The first validation problem as ``alerts[0].startsAt: message``, counting the rest."""
    err = exc.errors()[0]
    path = ""
    for part in err["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = "required field is missing" if err["type"] == "missing" else err["msg"]
    more = exc.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {message}{suffix}" if path else f"{message}{suffix}"


def short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120]
