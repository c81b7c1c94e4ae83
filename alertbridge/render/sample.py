"""Built-in sample data, after Alertmanager's ``amtool template render`` defaults.

One firing and one resolved alert with CJK text: enough to exercise both
branches of a template and multi-byte handling. Used by ``check-config``,
``send-test`` and ``Renderer.check``, so a template is proven to render
before the first real alert needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from alertbridge.model import Alert, AlertGroup, Status


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(mapping.items())))


def sample_group(now: datetime | None = None) -> AlertGroup:
    """A group as Alertmanager would send it at ``now`` (default: the current time).

    Times are relative to ``now`` so durations read naturally ("已持续 3小时5分").
    """
    if now is None:
        now = datetime.now(UTC).replace(microsecond=0)
    common = {"alertname": "HighCPU", "job": "node", "severity": "critical"}
    firing = Alert(
        status=Status.FIRING,
        labels=_frozen({**common, "instance": "web-1:9100"}),
        annotations=_frozen(
            {
                "summary": "web-1 CPU 使用率过高",
                "description": "web-1:9100 的 CPU 使用率已连续 5 分钟超过 90%（当前 97.3%）。",
            }
        ),
        starts_at=now - timedelta(hours=3, minutes=5),
        ends_at=None,
        fingerprint="8f3c1a6b2d4e5f70",
        generator_url="http://prometheus.example.org:9090/graph?g0.expr=instance%3Anode_cpu%3Aratio+%3E+0.9&g0.tab=1",
    )
    resolved = Alert(
        status=Status.RESOLVED,
        labels=_frozen({**common, "instance": "web-2:9100"}),
        annotations=_frozen(
            {
                "summary": "web-2 CPU 使用率过高",
                "description": "web-2:9100 的 CPU 使用率已恢复正常。",
            }
        ),
        starts_at=now - timedelta(minutes=47, seconds=12),
        ends_at=now - timedelta(minutes=2),
        fingerprint="1b9d7e2c3a4f5061",
        generator_url="http://prometheus.example.org:9090/graph?g0.expr=instance%3Anode_cpu%3Aratio+%3E+0.9&g0.tab=1",
    )
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key='{}:{alertname="HighCPU"}',
        alerts=(firing, resolved),
        group_labels=_frozen({"alertname": "HighCPU"}),
        common_labels=_frozen(common),
        common_annotations=_frozen({}),
        external_url="http://alertmanager.example.org:9093",
        source_receiver="wecom",
        truncated_alerts=0,
    )
