"""Alertmanager v4 webhook bodies for the scenarios.

Every alert carries a unique ``instance`` label, which the default templates
print on the alert's "目标" line: finding that value in the text WeCom
received is how the storm and latency scenarios tell an alert was delivered.
Fingerprints are unique too, so alertbridge's HA de-duplication never merges
two benchmark notifications.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert(alertname: str, instance: str, fingerprint: str, starts_at: str | None = None) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": alertname, "instance": instance, "job": "node", "severity": "critical"},
        "annotations": {"summary": f"{instance} 磁盘使用率 97%"},
        "startsAt": starts_at or _now(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=disk_used%3E0.95",
        "fingerprint": fingerprint,
    }


def notification(alertname: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """One group notification, as Alertmanager's webhook_config posts it (group_by: [alertname])."""
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bench",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "job": "node", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": alerts,
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def storm_instance(group: int, index: int) -> str:
    """The unique value of alert ``index`` of storm group ``group``: ``s007-42``."""
    return f"s{group:03d}-{index:02d}"


def storm_notification(group: int, alerts_per_group: int) -> bytes:
    """Storm group ``group`` with all its alerts."""
    name = f"DiskFull{group:03d}"
    now = _now()
    alerts = [
        alert(name, storm_instance(group, a), f"{group:06x}{a:04x}5707", now) for a in range(alerts_per_group)
    ]
    return encode(notification(name, alerts))


def latency_instance(seq: int) -> str:
    return f"lat-{seq:06d}"


def latency_notification(seq: int) -> bytes:
    """One alert, its own group (so each is one delivery and one message)."""
    name = f"Latency{seq:06d}"
    return encode(notification(name, [alert(name, latency_instance(seq), f"{seq:012x}1a7e")]))


def token_notification(seq: int) -> bytes:
    name = f"Token{seq:04d}"
    return encode(notification(name, [alert(name, f"tok-{seq:04d}", f"{seq:012x}70ce")]))
