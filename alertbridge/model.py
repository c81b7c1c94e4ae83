"""The source-independent alert model.

Alertmanager and Grafana payloads are parsed into these frozen types at the
edge (``alertbridge.sources``); everything downstream — rendering, the
outbox, channels — sees only this model. ``to_dict``/``from_dict`` give the
stable JSON form the store keeps, so a notification accepted by one version
can be rendered by the next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from json.encoder import encode_basestring as _json_string  # the json module's own escaping
from types import MappingProxyType
from typing import Any, Final, TypeVar

_V = TypeVar("_V")


class Status(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(mapping.items())))


def _plain(mapping: Mapping[str, _V]) -> dict[str, _V]:
    """A plain dict copy of a model mapping: ``dict()`` of a read-only view goes
    through its keys one by one, ``copy()`` copies the dict behind it (8x faster)."""
    return mapping.copy() if isinstance(mapping, MappingProxyType) else dict(mapping)


def _frozen_values(mapping: Mapping[str, float] | None) -> Mapping[str, float] | None:
    if mapping is None:
        return None
    return MappingProxyType({k: float(v) for k, v in sorted(mapping.items())})


def format_value(value: float) -> str:
    """A number as people write it: ``95.2``, ``1`` (not ``1.0``), ``2473545728``, ``1.5e-07``."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# The text fields ``to_dict`` writes only when set: Grafana's, per alert and per group.
_GRAFANA_ALERT_TEXT: Final = (
    "value_string",
    "image_url",
    "dashboard_url",
    "panel_url",
    "silence_url",
    "rule_uid",
)
_GROUP_TEXT: Final = ("external_url", "source_receiver", "title", "message")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: a label set with a state and a time span.

    The fields after ``generator_url`` come from Grafana and are empty for
    Alertmanager alerts: ``values`` (query refID → number; ``None`` when the
    source sent none), ``value_string`` (Grafana's older text form of the
    same), links to the dashboard, the panel, a panel screenshot and
    Grafana's own "new silence" form, and the alert rule's UID.
    """

    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None  # None while firing ("open")
    fingerprint: str
    generator_url: str = ""
    values: Mapping[str, float] | None = None
    value_string: str = ""
    image_url: str = ""
    dashboard_url: str = ""
    panel_url: str = ""
    silence_url: str = ""
    rule_uid: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def values_text(self) -> str:
        """``values`` as ``A=95.2, C=1`` (sorted by refID), else ``value_string``, else ``""``."""
        if self.values:
            return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(self.values.items()))
        return self.value_string

    def to_dict(self) -> dict[str, Any]:
        """The stored form. Fields at their defaults (Grafana's, on an Alertmanager
        alert) are left out, as ``from_dict`` of every version defaults them:
        a smaller row is fewer database pages written per webhook (Phase 10)."""
        data: dict[str, Any] = {
            "status": self.status.value,
            "labels": _plain(self.labels),
            "annotations": _plain(self.annotations),
            "starts_at": self.starts_at.isoformat(),
            # Every version's from_dict reads ends_at unconditionally.
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "fingerprint": self.fingerprint,
        }
        if self.generator_url:
            data["generator_url"] = self.generator_url
        if self.values is not None:
            data["values"] = _plain(self.values)
        for key in _GRAFANA_ALERT_TEXT:
            value = getattr(self, key)
            if value:
                data[key] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        return cls(
            status=Status(data["status"]),
            labels=_frozen(data["labels"]),
            annotations=_frozen(data["annotations"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]) if data.get("ends_at") else None,
            fingerprint=data["fingerprint"],
            generator_url=data.get("generator_url", ""),
            # Rows stored before Grafana support have none of these.
            values=_frozen_values(data.get("values")),
            value_string=data.get("value_string", ""),
            image_url=data.get("image_url", ""),
            dashboard_url=data.get("dashboard_url", ""),
            panel_url=data.get("panel_url", ""),
            silence_url=data.get("silence_url", ""),
            rule_uid=data.get("rule_uid", ""),
        )


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """One notification about a group of alerts, as a source delivered it.

    ``group_key`` is stable across re-notifications and HA peers; it is what
    later phases thread acks and dedup on. ``truncated_alerts`` counts alerts
    the source left out (Alertmanager's ``max_alerts``) so templates can say
    "+N more" instead of hiding them.

    Grafana adds the notification's rendered ``title`` and ``message`` and
    its ``org_id``; ``legacy`` marks Grafana's old (pre-8) dashboard
    alerting, whose alerts cannot be silenced through any silence API.
    """

    source: str
    status: Status
    group_key: str
    alerts: tuple[Alert, ...]
    group_labels: Mapping[str, str] = field(default_factory=dict)
    common_labels: Mapping[str, str] = field(default_factory=dict)
    common_annotations: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""
    source_receiver: str = ""
    truncated_alerts: int = 0
    title: str = ""
    message: str = ""
    org_id: int | None = None
    legacy: bool = False

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is Status.FIRING)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is Status.RESOLVED)

    def notification_key(self) -> str:
        """What makes two notifications the same, whichever HA peer sent them.

        The group and each alert's fingerprint, status and times; not
        ``external_url``, the only field that differs between peers' copies.

        The key is the SHA-256 of ``json.dumps(identity, ensure_ascii=False)``
        with ``identity = [source, group_key, status, sorted([fingerprint,
        status, starts_at, ends_at or ""] per alert)]``, the same text written
        here by hand (2.5x cheaper, Phase 10): stored dedup keys must match
        across versions. Statuses and ``isoformat`` times need no escaping.
        """
        alerts = sorted(
            (
                a.fingerprint,
                a.status.value,
                a.starts_at.isoformat(),
                a.ends_at.isoformat() if a.ends_at else "",
            )
            for a in self.alerts
        )
        identity = '[{}, {}, "{}", [{}]]'.format(
            _json_string(self.source),
            _json_string(self.group_key),
            self.status.value,
            ", ".join(
                f'[{_json_string(fp)}, "{status}", "{start}", "{end}"]' for fp, status, start, end in alerts
            ),
        )
        return hashlib.sha256(identity.encode()).hexdigest()

    def with_alerts(self, alerts: tuple[Alert, ...]) -> AlertGroup:
        """The same group narrowed to ``alerts``, its status recomputed."""
        status = Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED
        return replace(self, status=status, alerts=alerts)

    def to_dict(self) -> dict[str, Any]:
        """The stored form, without the fields at their defaults (see ``Alert.to_dict``)."""
        data: dict[str, Any] = {
            "source": self.source,
            "status": self.status.value,
            "group_key": self.group_key,
            "alerts": [a.to_dict() for a in self.alerts],
            "group_labels": _plain(self.group_labels),
            "common_labels": _plain(self.common_labels),
            "common_annotations": _plain(self.common_annotations),
        }
        for key in _GROUP_TEXT:
            value = getattr(self, key)
            if value:
                data[key] = value
        if self.truncated_alerts:
            data["truncated_alerts"] = self.truncated_alerts
        if self.org_id is not None:
            data["org_id"] = self.org_id
        if self.legacy:
            data["legacy"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertGroup:
        return cls(
            source=data["source"],
            status=Status(data["status"]),
            group_key=data["group_key"],
            alerts=tuple(Alert.from_dict(a) for a in data["alerts"]),
            group_labels=_frozen(data.get("group_labels", {})),
            common_labels=_frozen(data.get("common_labels", {})),
            common_annotations=_frozen(data.get("common_annotations", {})),
            external_url=data.get("external_url", ""),
            source_receiver=data.get("source_receiver", ""),
            truncated_alerts=int(data.get("truncated_alerts", 0)),
            title=data.get("title", ""),
            message=data.get("message", ""),
            org_id=int(data["org_id"]) if data.get("org_id") is not None else None,
            legacy=bool(data.get("legacy", False)),
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """Who acknowledged an alert group, and when (shown on its later messages)."""

    user: str
    at: datetime
