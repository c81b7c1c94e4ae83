"""Grafana alert webhooks → ``AlertGroup`` (``source="grafana"``).

Two flavours arrive at ``/grafana/{receiver}``:

Unified alerting (Grafana 8+, contact point type "webhook", ``"version": "1"``)
    Alertmanager's v4 message plus ``orgId``, ``state``, ``title``, ``message``
    and, per alert, ``values`` (refID → number), ``valueString``,
    ``silenceURL``, ``dashboardURL``, ``panelURL``, ``imageURL`` and (recent
    versions) ``ruleUID``. ``endsAt`` of a firing alert is Go's zero time.
    Grafana strips its ``__private__`` labels but computes the fingerprint on
    the full set, so the fingerprint is taken as sent, never recomputed.

Legacy dashboard alerting (Grafana ≤ 10, no ``version``)
    One POST per rule state change, no grouping and no times. Each becomes a
    group of one synthetic alert:

    - labels: the rule's ``tags``, then ``alertname`` = ``ruleName`` and
      ``rule_id`` (these two win over tags of the same name);
    - annotations: ``message`` (when the rule has one) and ``grafana_state``
      (the legacy state, so templates can say "no data" or "paused");
    - status by ``state``: ``alerting`` and ``no_data`` fire (no data is
      something to look at); ``pending`` fires too — Grafana does not notify
      on pending, so one that arrives anyway is shown rather than lost, with
      its state; ``ok`` resolves; ``paused`` resolves as well, because a
      paused rule is never evaluated again and nothing else would ever close
      the alert (templates show it as paused, not as recovered);
    - ``starts_at`` (and ``ends_at`` when resolved) = when the notification
      was received, the only time there is;
    - fingerprint: a stable hash of ``orgId`` and ``ruleId``, so the ok that
      follows an alerting resolves the same alert;
    - ``values`` from ``evalMatches`` (``metric`` → ``value``; null values
      left out), ``image_url`` = ``imageUrl``, ``generator_url`` = ``ruleUrl``;
    - ``group_key`` ``grafana-legacy/{ruleId}`` and ``legacy=True``: these
      alerts cannot be silenced through any silence API.

Anything else (an Alertmanager body, a custom ``payload`` template) is
rejected with a one-line reason; unknown fields are ignored.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator

from alertbridge.errors import PayloadError
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.sources import onepass
from alertbridge.sources.common import (
    ALERTMANAGER_ELSEWHERE,
    AlertV4,
    Freeze,
    Lenient,
    MessageV4,
    first_error,
    frozen,
    grafana_flavour,
    has_surrogate_escape,
    load_object,
    v4_alert,
    v4_group,
)

SOURCE = "grafana"

_M = TypeVar("_M", bound=Lenient)
_V = TypeVar("_V")

LegacyState = Literal["ok", "paused", "alerting", "pending", "no_data"]

# Group keys of legacy Grafana alerts: they have no silence API to call.
LEGACY_GROUP_PREFIX = "grafana-legacy/"

_LEGACY_STATUS: dict[str, Status] = {
    "alerting": Status.FIRING,
    "no_data": Status.FIRING,
    "pending": Status.FIRING,
    "ok": Status.RESOLVED,
    "paused": Status.RESOLVED,
}


class _UnifiedAlert(AlertV4):
    silenceURL: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    imageURL: str = ""
    values: dict[str, float] | None = None
    valueString: str = ""
    ruleUID: str = ""


class _Unified(MessageV4):
    version: Literal["1"]
    alerts: list[_UnifiedAlert] = Field(min_length=1)
    orgId: int | None = None
    title: str = ""
    message: str = ""


class _EvalMatch(Lenient):
    metric: str = ""
    value: float | None = None
    tags: dict[str, str] | None = None


class _Legacy(Lenient):
    ruleId: int
    ruleName: str = ""
    state: LegacyState
    evalMatches: list[_EvalMatch] | None = None
    orgId: int | None = None
    tags: dict[str, str] | None = None
    title: str = ""
    message: str = ""
    ruleUrl: str = ""
    imageUrl: str = ""
    # A very early version of the legacy notifier used snake_case for these.
    rule_url: str = ""
    image_url: str = ""

    @field_validator(
        "ruleName", "title", "message", "ruleUrl", "imageUrl", "rule_url", "image_url", mode="before"
    )
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return "" if value is None else value


def parse(body: bytes, *, received_at: datetime | None = None) -> AlertGroup:
    """Parse one Grafana webhook body, unified or legacy.

    ``received_at`` is when the body arrived (aware); only legacy bodies use
    it, as they carry no times. It defaults to the current time, the one
    impure thing here: the web layer passes its own clock.

    Raises:
        PayloadError: not JSON, not an object, an Alertmanager body (told to
            go to ``/alertmanager/``), neither Grafana flavour, or a field of
            the wrong type; the message names the first offending field.
        ValueError: ``received_at`` is naive.
    """
    if not has_surrogate_escape(body):
        # A unified body in one pass with msgspec (Phase 10), which takes only
        # what the validating way below takes, and makes the same group of it.
        try:
            return _unified_onepass(onepass.decode(onepass.UNIFIED, body))
        except onepass.NotTaken:
            pass
    return validating_parse(body, received_at)


def validating_parse(body: bytes, received_at: datetime | None) -> AlertGroup:
    """``parse`` without the one-pass decoder: the way that names every problem."""
    data = load_object(SOURCE, body)
    version = data.get("version")
    if version == "4":
        raise PayloadError(SOURCE, ALERTMANAGER_ELSEWHERE)
    flavour = "unified" if version == "1" else grafana_flavour(data)
    if flavour == "unified":
        return _unified(_validate(_Unified, data))
    if flavour == "legacy":
        if received_at is None:
            received_at = datetime.now(UTC)
        elif received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        return _legacy(_validate(_Legacy, data), received_at)
    if version is not None:
        raise PayloadError(SOURCE, f'expected "version": "1" (Grafana unified alerting), got {version!r:.40}')
    raise PayloadError(
        SOURCE,
        'neither a Grafana alerting webhook ("version": "1") nor a legacy Grafana alert '
        "(ruleId, evalMatches); custom payload templates are not supported",
    )


def looks_like_grafana(body: bytes) -> bool:
    """Whether ``body`` is shaped like a Grafana webhook (unified or legacy), without validating it."""
    try:
        data = load_object(SOURCE, body)
    except PayloadError:
        return False
    return grafana_flavour(data) is not None


def _validate(model: type[_M], data: dict[str, Any]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(SOURCE, first_error(exc)) from None


def _unified(message: _Unified) -> AlertGroup:
    alerts = tuple(v4_alert(a, **_grafana_fields(a, frozen)) for a in message.alerts)
    return _unified_group(message, alerts, frozen)


def _unified_onepass(message: onepass.UnifiedMessage) -> AlertGroup:
    view = onepass.sorted_view
    alerts = tuple(onepass.v4_alert(a, **_grafana_fields(a, view)) for a in message.alerts)
    return _unified_group(message, alerts, view)


def _unified_group(
    message: _Unified | onepass.UnifiedMessage, alerts: tuple[Alert, ...], freeze: Freeze[str]
) -> AlertGroup:
    return v4_group(
        SOURCE, message, alerts, freeze, title=message.title, message=message.message, org_id=message.orgId
    )


def _grafana_fields(raw: _UnifiedAlert | onepass.UnifiedAlert, freeze: Freeze[float]) -> dict[str, Any]:
    """The model alert's fields only Grafana sends."""
    return {
        "values": freeze(raw.values) if raw.values is not None else None,
        "value_string": raw.valueString,
        "image_url": raw.imageURL,
        "dashboard_url": raw.dashboardURL,
        "panel_url": raw.panelURL,
        "silence_url": raw.silenceURL,
        "rule_uid": raw.ruleUID,
    }


def _legacy(message: _Legacy, received_at: datetime) -> AlertGroup:
    status = _LEGACY_STATUS[message.state]
    name = message.ruleName or f"Grafana rule {message.ruleId}"
    labels = {**(message.tags or {}), "alertname": name, "rule_id": str(message.ruleId)}
    annotations: dict[str, str] = {"grafana_state": message.state}
    if message.message:
        annotations["message"] = message.message
    org = "" if message.orgId is None else str(message.orgId)
    identity = f"grafana-legacy:{org}:{message.ruleId}".encode()
    alert = Alert(
        status=status,
        labels=frozen(labels),
        annotations=frozen(annotations),
        starts_at=received_at,
        ends_at=received_at if status is Status.RESOLVED else None,
        fingerprint=hashlib.sha256(identity).hexdigest()[:16],
        generator_url=message.ruleUrl or message.rule_url,
        values=frozen(_eval_values(message.evalMatches or [])),
        image_url=message.imageUrl or message.image_url,
    )
    return AlertGroup(
        source=SOURCE,
        status=status,
        group_key=f"{LEGACY_GROUP_PREFIX}{message.ruleId}",
        alerts=(alert,),
        group_labels=frozen({"alertname": name}),
        common_labels=alert.labels,
        common_annotations=alert.annotations,
        title=message.title,
        message=message.message,
        org_id=message.orgId,
        legacy=True,
    )


def _eval_values(matches: list[_EvalMatch]) -> dict[str, float]:
    """``metric`` → ``value``; a repeated or empty metric name gets ``#n`` (its position) appended."""
    values: dict[str, float] = {}
    for number, match in enumerate(matches, 1):
        if match.value is None:
            continue
        key = match.metric or f"#{number}"
        if key in values:
            key = f"{key} #{number}"
        values[key] = match.value
    return values
