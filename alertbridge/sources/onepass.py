"""One-pass decoding of v4 webhook bodies with msgspec: the common case, cheaply.

pydantic's ``model_validate_json`` and the conversion into the model cost
~28 µs per Alertmanager webhook (Phase 10); msgspec decodes the same body
into the Structs below in a few µs. They take a strict subset of what the
pydantic models in ``alertbridge.sources.common`` take, and ``NotTaken``
means "not here": the caller then runs its pydantic path unchanged, which
alone decides what is refused and how the refusal reads.

Why the subset is safe (``tests/test_source_onepass.py`` checks it body by
body against the pydantic path):

* exact JSON types only (no ``"3"`` for an int, no number for a group key);
* no unknown field: msgspec would skip one unread, without the UTF-8, digit
  and depth checks ``json.loads`` applies, so a body with one goes the
  pydantic way; every byte taken here has been decoded and checked;
* times are decoded as text and parsed by pydantic's own datetime parser
  (msgspec's rounds nanoseconds, which Alertmanager sends, where pydantic
  truncates them), then range-checked as the models' validators do;
* dicts msgspec has just made belong to nobody else, so a sorted one is
  wrapped read-only as it is instead of copied (Go's JSON encoder sorts
  map keys: Alertmanager's labels arrive sorted).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from pydantic import TypeAdapter, ValidationError

from alertbridge.model import Alert, AlertGroup
from alertbridge.sources.common import aware, in_range, model_alert, v4_group

_V = TypeVar("_V")

_GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"
_TIME: Final = TypeAdapter(datetime)


class NotTaken(Exception):
    """A body the one-pass decoder leaves to the validating (pydantic) path."""


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Field names are the payload's own (camelCase), as in the pydantic models."""


class AlertV4(_Strict, kw_only=True):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: str
    endsAt: str | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class MessageV4(_Strict, kw_only=True):
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: Annotated[str, msgspec.Meta(min_length=1)]
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    # pydantic takes integers of any size; this, what fits 64 bits.
    truncatedAlerts: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0


class _AlertmanagerMessage(MessageV4, kw_only=True):
    version: Literal["4"]
    alerts: Annotated[list[AlertV4], msgspec.Meta(min_length=1)]
    # Read (typed, so nothing is skipped unread) and not used, as the pydantic
    # model ignores them: without them every webhook of Alertmanager 0.32+
    # (notification_reason) and 0.34+ (routeLabels) would go the slow way.
    notification_reason: str = ""
    routeLabels: dict[str, str] = {}


_ALERTMANAGER: Final = msgspec.json.Decoder(_AlertmanagerMessage)

# pydantic takes integers of any size; these take what fits 64 bits.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class UnifiedAlert(AlertV4, kw_only=True):
    """A Grafana unified alert: ``grafana._UnifiedAlert``'s fields again, for msgspec
    (the tests hold the two to one result); ``orgId`` (repeated per alert) is
    read only so that nothing is skipped unread."""

    silenceURL: str = ""
    dashboardURL: str = ""
    panelURL: str = ""
    imageURL: str = ""
    values: dict[str, float] | None = None
    valueString: str = ""
    ruleUID: str = ""
    orgId: _Int64 | None = None


class UnifiedMessage(MessageV4, kw_only=True):
    """A Grafana unified alerting body; ``state`` and ``appVersion`` are read, not used."""

    version: Literal["1"]
    alerts: Annotated[list[UnifiedAlert], msgspec.Meta(min_length=1)]
    orgId: _Int64 | None = None
    title: str = ""
    message: str = ""
    state: str = ""
    appVersion: str = ""


UNIFIED: Final = msgspec.json.Decoder(UnifiedMessage)


def alertmanager_group(source: str, body: bytes) -> AlertGroup:
    """The group of an Alertmanager v4 body, as ``alertmanager.parse`` makes it.

    Raises:
        NotTaken: anything but the plain case (see the module docstring).
    """
    message = decode(_ALERTMANAGER, body)
    return v4_group(source, message, tuple(v4_alert(a) for a in message.alerts), sorted_view)


def decode(decoder: msgspec.json.Decoder[_V], body: bytes) -> _V:
    """``body`` decoded, or ``NotTaken``."""
    try:
        return decoder.decode(body)
    except msgspec.MsgspecError:
        raise NotTaken from None


def v4_alert(raw: AlertV4, **extra: Any) -> Alert:
    """The model alert for ``raw``, its times checked as the pydantic model's validators do."""
    return model_alert(raw, start_time(raw.startsAt), end_time(raw.endsAt), sorted_view, **extra)


# Alertmanager repeats an alert's startsAt in every notification until it
# resolves, and a group's alerts often share one: a parsed time is kept.
@lru_cache(maxsize=1024)
def start_time(text: str) -> datetime:
    """``startsAt``, aware (naive is UTC), if within the range the model's validator allows."""
    moment = _parse_time(text)
    if not in_range(moment):
        raise NotTaken
    return aware(moment)


@lru_cache(maxsize=1024)
def end_time(text: str | None) -> datetime | None:
    """``endsAt``: Go's zero time (year 1, in any offset) is ``None``, "still firing"."""
    if text is None or text == _GO_ZERO_TIME:
        return None
    moment = _parse_time(text)
    if moment.year == 1:
        return None
    if not in_range(moment):
        raise NotTaken
    return aware(moment)


def _parse_time(text: str) -> datetime:
    try:
        return _TIME.validate_python(text)
    except ValidationError:
        raise NotTaken from None


def sorted_view(fresh: dict[str, _V]) -> MappingProxyType[str, _V]:
    """``fresh`` (a dict nobody else holds) read-only, in key order; copied only if unsorted."""
    previous = ""
    for key in fresh:
        if key < previous:
            return MappingProxyType(dict(sorted(fresh.items())))
        previous = key
    return MappingProxyType(fresh)
