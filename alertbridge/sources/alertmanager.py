"""Alertmanager webhook payloads (``"version": "4"``) → ``AlertGroup``.

The schema is Alertmanager's ``notify/webhook`` ``Message``. Firing alerts
carry ``endsAt: 0001-01-01T00:00:00Z`` (Go's zero time), which we map to
``None``. Unknown fields are ignored so newer Alertmanagers (0.32 adds
``notification_reason``, 0.34 ``routeLabels``) keep working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from alertbridge.errors import PayloadError
from alertbridge.model import AlertGroup
from alertbridge.sources import onepass
from alertbridge.sources.common import (
    GRAFANA_ELSEWHERE,
    AlertV4,
    MessageV4,
    first_error,
    grafana_flavour,
    has_surrogate_escape,
    load_object,
    v4_alert,
    v4_group,
)

SOURCE = "alertmanager"


class _MessageV4(MessageV4):
    version: Literal["4"]
    alerts: list[AlertV4] = Field(min_length=1)


def parse(body: bytes) -> AlertGroup:
    """Parse one webhook body.

    Raises:
        PayloadError: not JSON, not an object, not version 4 (a Grafana body,
            unified or legacy, is told to go to ``/grafana/``), or a field of
            the wrong type; the message names the first offending field.
    """
    if not has_surrogate_escape(body):
        # The common case in one pass with msgspec (12 µs less per webhook than
        # pydantic, Phase 10), which takes only what the validating way takes,
        # and makes the same group of it.
        try:
            return onepass.alertmanager_group(SOURCE, body)
        except onepass.NotTaken:
            pass
    return validating_parse(body)


def validating_parse(body: bytes) -> AlertGroup:
    """``parse`` without the one-pass decoder: the way that names every problem."""
    if not has_surrogate_escape(body):
        # Pydantic parses the JSON and validates it together (15 µs
        # less per webhook than json.loads + model_validate, Phase 10). A body it
        # does not take goes the way below, which names the problem exactly as
        # before, or takes what only json.loads reads.
        try:
            return _group(_MessageV4.model_validate_json(body))
        except ValidationError:
            pass
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
    return _group(message)


def _group(message: _MessageV4) -> AlertGroup:
    return v4_group(SOURCE, message, tuple(v4_alert(a) for a in message.alerts))
