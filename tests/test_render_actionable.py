"""Messages an on-call engineer can act on: runbooks and graphs, one silence link
per group, reply hints only where replies are heard, groups without alertname."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from alertbridge.channels.card import build_alert_card, task_id_for
from alertbridge.config import ButtonConfig
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.render import Renderer

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
FOUR = [("zh", "text"), ("zh", "markdown"), ("en", "text"), ("en", "markdown")]


def alert(
    instance: str = "web-1:9100",
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    status: Status = Status.FIRING,
    **fields: str,
) -> Alert:
    all_labels = {"alertname": "HighCPU", "instance": instance, "severity": "critical", **(labels or {})}
    return Alert(
        status=status,
        labels=MappingProxyType({k: v for k, v in sorted(all_labels.items()) if v}),
        annotations=MappingProxyType(annotations or {"summary": f"{instance} CPU 使用率过高"}),
        starts_at=NOW - timedelta(minutes=30),
        ends_at=None if status is Status.FIRING else NOW - timedelta(minutes=1),
        fingerprint=f"fp-{instance}",
        generator_url="http://prom:9090/graph?g0.expr=up",
        **fields,  # type: ignore[arg-type]
    )


def group(*alerts: Alert, source: str = "alertmanager", **fields: object) -> AlertGroup:
    common = {k: v for k, v in alerts[0].labels.items() if all(a.labels.get(k) == v for a in alerts)}
    values: dict[str, object] = {
        "source": source,
        "status": Status.FIRING,
        "group_key": "{}:{}",
        "alerts": alerts,
        "group_labels": MappingProxyType({k: v for k, v in common.items() if k == "alertname"}),
        "common_labels": MappingProxyType(common),
        "external_url": "http://am.example.org:9093",
        **fields,
    }
    return AlertGroup(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(timezone=TZ)


def render(renderer: Renderer, g: AlertGroup, language: str, msgtype: str, **kwargs: object) -> str:
    (message,) = renderer.render(
        g,
        template="default",
        language=language,
        msgtype=msgtype,
        channel="app",
        now=NOW,
        ref=9,
        **kwargs,  # type: ignore[arg-type]
    )
    return message.content


# ---- runbooks, dashboards, graphs ---------------------------------------------------


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_default_templates_link_runbook_dashboard_panel_and_graph(
    renderer: Renderer, language: str, msgtype: str
) -> None:
    g = group(
        alert(
            annotations={"summary": "s", "runbook_url": "https://wiki.example.org/runbooks/high-cpu"},
            dashboard_url="http://grafana/d/abc",
            panel_url="http://grafana/d/abc?viewPanel=2",
        ),
        source="grafana",
    )
    content = render(renderer, g, language, msgtype)
    for url in (
        "https://wiki.example.org/runbooks/high-cpu",
        "http://grafana/d/abc",
        "http://grafana/d/abc?viewPanel=2",
        "http://prom:9090/graph?g0.expr=up",
    ):
        assert url in content
    assert ("处理手册" if language == "zh" else "Runbook") in content


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_a_runbook_annotation_is_a_link_or_a_line_of_text(
    renderer: Renderer, language: str, msgtype: str
) -> None:
    linked = render(renderer, group(alert(annotations={"runbook": "https://wiki/r"})), language, msgtype)
    assert "https://wiki/r" in linked
    text = render(
        renderer, group(alert(annotations={"runbook": "先重启 nginx，再查看日志"})), language, msgtype
    )
    assert "先重启 nginx，再查看日志" in text


def _card(g: AlertGroup, language: str = "zh") -> dict[str, object]:
    message = build_alert_card(
        g,
        ref=9,
        ack=None,
        language=language,
        buttons=[ButtonConfig(action="ack")],
        task_id=task_id_for(9, 1),
        tz=TZ,
        now=NOW,
    )
    assert message.card is not None
    return dict(message.card)


def test_card_jumps_to_the_runbook_else_the_graph() -> None:
    with_runbook = _card(group(alert(annotations={"summary": "s", "runbook_url": "https://wiki/r"})))
    assert with_runbook["card_action"] == {"type": 1, "url": "https://wiki/r"}
    graph_only = _card(group(alert()))
    assert graph_only["card_action"] == {"type": 1, "url": "http://prom:9090/graph?g0.expr=up"}
    hostile = group(
        Alert(
            status=Status.FIRING,
            labels=MappingProxyType({"alertname": "X"}),
            annotations=MappingProxyType({"runbook_url": "javascript:alert(1)"}),
            starts_at=NOW,
            ends_at=None,
            fingerprint="x",
            generator_url="ftp://x/y",
        )
    )
    assert "card_action" not in _card(hostile)
