"""Alertmanager webhook payloads (``"version": "4"``) → ``AlertGroup``.

The schema is Alertmanager's ``notify/webhook`` ``Message``. Firing alerts
carry ``endsAt: 0001-01-01T00:00:00Z`` (Go's zero time), which we map to
``None``. Unknown fields are ignored so newer Alertmanagers (0.32 adds
``notification_reason``, 0.34 ``routeLabels``) keep working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, ValidationError

from alertbridge.errors import PayloadError
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.sources.common import (
    GRAFANA_ELSEWHERE,
    Lenient,
    aware,
    first_error,
    grafana_flavour,
    load_object,
    open_end,
)

SOURCE = "alertmanager"


class _AlertV4(Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1)


class _MessageV4(Lenient):
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
        PayloadError: not JSON, not an object, not version 4 (a Grafana body,
            unified or legacy, is told to go to ``/grafana/``), or a field of
            the wrong type; the message names the first offending field.
    """
    data = load_object(SOURCE, body)
    if grafana_flavour(data) is not None:
        raise PayloadError(SOURCE, GRAFANA_ELSEWHERE)
    version = data.get("version")
    if version != "4":
        raise PayloadError(SOURCE, f'expected "version": "4" (Alertmanager webhook v4), got {version!r:.40}')
    try:
        message = _MessageV4.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(SOURCE, first_error(exc)) from None
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
    return Alert(
        status=Status(raw.status),
        labels=raw.labels,
        annotations=raw.annotations,
        starts_at=aware(raw.startsAt),
        ends_at=open_end(raw.endsAt),
        fingerprint=raw.fingerprint,
        generator_url=raw.generatorURL,
    )
