"""The source-independent alert model.

Alertmanager and Grafana payloads are parsed into these frozen types at the
edge (``alertbridge.sources``); everything downstream — rendering, the
outbox, channels — sees only this model. ``to_dict``/``from_dict`` give the
stable JSON form the store keeps, so a notification accepted by one version
can be rendered by the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Status(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(mapping.items())))


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: a label set with a state and a time span."""

    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None  # None while firing ("open")
    fingerprint: str
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "fingerprint": self.fingerprint,
            "generator_url": self.generator_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        return cls(
            status=Status(data["status"]),
            labels=_frozen(data["labels"]),
            annotations=_frozen(data["annotations"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]) if data["ends_at"] else None,
            fingerprint=data["fingerprint"],
            generator_url=data.get("generator_url", ""),
        )


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """One notification about a group of alerts, as a source delivered it.

    ``group_key`` is stable across re-notifications and HA peers; it is what
    later phases thread acks and dedup on. ``truncated_alerts`` counts alerts
    the source left out (Alertmanager's ``max_alerts``) so templates can say
    "+N more" instead of hiding them.
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

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is Status.FIRING)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is Status.RESOLVED)

    def with_alerts(self, alerts: tuple[Alert, ...]) -> AlertGroup:
        """The same group narrowed to ``alerts``, its status recomputed."""
        status = Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED
        return AlertGroup(
            source=self.source,
            status=status,
            group_key=self.group_key,
            alerts=alerts,
            group_labels=self.group_labels,
            common_labels=self.common_labels,
            common_annotations=self.common_annotations,
            external_url=self.external_url,
            source_receiver=self.source_receiver,
            truncated_alerts=self.truncated_alerts,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status.value,
            "group_key": self.group_key,
            "alerts": [a.to_dict() for a in self.alerts],
            "group_labels": dict(self.group_labels),
            "common_labels": dict(self.common_labels),
            "common_annotations": dict(self.common_annotations),
            "external_url": self.external_url,
            "source_receiver": self.source_receiver,
            "truncated_alerts": self.truncated_alerts,
        }

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
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """Who acknowledged an alert group, and when (shown on its later messages)."""

    user: str
    at: datetime
