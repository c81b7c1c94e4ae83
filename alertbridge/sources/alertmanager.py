"""Alertmanager webhook payloads (``"version": "4"``) → ``AlertGroup``.

The schema is Alertmanager's ``notify/webhook`` ``Message``. Firing alerts
carry ``endsAt: 0001-01-01T00:00:00Z`` (Go's zero time), which we map to
``None``. Unknown fields are ignored so newer Alertmanagers (0.32 adds
``notification_reason``, 0.34 ``routeLabels``) keep working.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alertbridge.errors import PayloadError
from alertbridge.model import Alert, AlertGroup, Status

SOURCE = "alertmanager"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _AlertV4(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1)


class _MessageV4(_Lenient):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = Field(min_length=1)
    alerts: list[_AlertV4] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    truncatedAlerts: int = Field(default=0, ge=0)


def parse(body: bytes) -> AlertGroup:
    """Parse one webhook body.

    Raises:
        PayloadError: not JSON, not an object, not version 4, or a field of
            the wrong type; the message names the first offending field.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(SOURCE, f"body is not valid JSON ({_short(exc)})") from None
    if not isinstance(data, dict):
        raise PayloadError(SOURCE, "body must be a JSON object")
    version = data.get("version")
    if version == "1" and "orgId" in data:
        raise PayloadError(SOURCE, "this is a Grafana payload; post it to /grafana/{receiver}")
    if version != "4":
        raise PayloadError(SOURCE, f'expected "version": "4" (Alertmanager webhook v4), got {version!r:.40}')
    try:
        message = _MessageV4.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(SOURCE, _first_error(exc)) from None
    alerts = tuple(_alert(a) for a in message.alerts)
    return AlertGroup(
        source=SOURCE,
        status=Status(message.status),
        group_key=message.groupKey,
        alerts=alerts,
        group_labels=message.groupLabels,
        common_labels=message.commonLabels,
        common_annotations=message.commonAnnotations,
        external_url=message.externalURL,
        source_receiver=message.receiver,
        truncated_alerts=message.truncatedAlerts,
    )


def _alert(raw: _AlertV4) -> Alert:
    ends_at = _aware(raw.endsAt) if raw.endsAt is not None and raw.endsAt.year > 1 else None
    return Alert(
        status=Status(raw.status),
        labels=raw.labels,
        annotations=raw.annotations,
        starts_at=_aware(raw.startsAt),
        ends_at=ends_at,
        fingerprint=raw.fingerprint,
        generator_url=raw.generatorURL,
    )


def _aware(moment: datetime) -> datetime:
    # Alertmanager always sends an offset; a hand-written payload may not.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    path = ""
    for part in err["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = "required field is missing" if err["type"] == "missing" else err["msg"]
    more = exc.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {message}{suffix}" if path else f"{message}{suffix}"


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120]
