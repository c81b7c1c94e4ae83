"""The default templates on Grafana groups: values, dashboard/panel/image links, Grafana's silence link."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from alertbridge.message import RenderedMessage
from alertbridge.messengers.registry import BYTE_LIMITS
from alertbridge.model import AlertGroup
from alertbridge.render import Renderer
from alertbridge.sources import grafana

DATA = Path(__file__).parent / "data" / "grafana"
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 29, 15, 13, 53, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 29, 15, 0, 0, tzinfo=UTC)  # 23:00:00 in Shanghai
FOUR = [("zh", "text"), ("zh", "markdown"), ("en", "text"), ("en", "markdown")]
SILENCE = (
    "https://grafana.example.org/alerting/silence/new?alertmanager=grafana"
    "&matcher=__alert_rule_uid__%3Dadx7k2m9q1&matcher=instance%3Ddb-1%3A9100&orgId=1"
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(timezone=SHANGHAI)


def parse(name: str, **changes: object) -> AlertGroup:
    data = json.loads((DATA / name).read_text(encoding="utf-8"))
    data.update(changes)
    return grafana.parse(json.dumps(data).encode(), received_at=RECEIVED)


def render(
    renderer: Renderer, group: AlertGroup, language: str, msgtype: str, channel: str = "app"
) -> list[RenderedMessage]:
    return renderer.render(
        group, template="default", language=language, msgtype=msgtype, channel=channel, now=NOW
    )


def render_one(renderer: Renderer, group: AlertGroup, language: str = "zh", msgtype: str = "markdown") -> str:
    [message] = render(renderer, group, language, msgtype)
    return message.content


def test_zh_markdown_golden(renderer: Renderer) -> None:
    assert render_one(renderer, parse("unified-firing.json")) == "\n".join(
        [
            '### <font color="warning">【告警 1 条】DiskAlmostFull</font>',
            "标签：grafana_folder=Infrastructure",
            f"[静默本组]({SILENCE})",
            "",
            '**1. DiskAlmostFull** <font color="warning">告警中</font> · critical',
            "> 目标：db-1:9100",
            "> 摘要：db-1 根分区使用率超过 90%",
            "> 描述：/ on db-1 is 95.2% full.",
            "> 数值：A=95.2, C=1",
            "> 开始：2026-11-29 20:08:44（已持续 3小时5分）",
            "> [告警规则](https://grafana.example.org/alerting/grafana/adx7k2m9q1/view?orgId=1)"
            " · [仪表盘](https://grafana.example.org/d/node-disk?orgId=1)"
            " · [面板](https://grafana.example.org/d/node-disk?orgId=1&viewPanel=4)",
        ]
    )


def test_en_text_golden(renderer: Renderer) -> None:
    assert render_one(renderer, parse("unified-firing.json"), "en", "text") == "\n".join(
        [
            "[FIRING:1] DiskAlmostFull",
            "Labels: grafana_folder=Infrastructure",
            f"Silence this group: {SILENCE}",
            "",
            "1. DiskAlmostFull [FIRING] critical",
            "Target: db-1:9100",
            "Summary: db-1 根分区使用率超过 90%",
            "Description: / on db-1 is 95.2% full.",
            "Values: A=95.2, C=1",
            "Started: 2026-11-29 20:08:44 (firing for 3h 5m)",
            "Rule: https://grafana.example.org/alerting/grafana/adx7k2m9q1/view?orgId=1",
            "Dashboard: https://grafana.example.org/d/node-disk?orgId=1",
            "Panel: https://grafana.example.org/d/node-disk?orgId=1&viewPanel=4",
        ]
    )


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_values_links_and_image(renderer: Renderer, language: str, msgtype: str) -> None:
    content = render_one(renderer, parse("unified-multi.json"), language, msgtype)
    values = "数值：" if language == "zh" else "Values: "
    assert f"{values}A=2473545728, B=0.8125, C=1" in content
    assert f"{values}A=0.31, C=0" in content
    image = "https://grafana.example.org/public/img/attachments/s3cr3tT0k3n.png"
    label = "面板截图" if language == "zh" else "Panel image"
    assert (
        f"[{label}]({image})"
        if msgtype == "markdown"
        else f"{label}{'：' if language == 'zh' else ': '}{image}"
    ) in content
    assert content.count("viewPanel=12") == 2  # both alerts have the panel
    # Only the firing alert gets a silence link, and it is Grafana's.
    assert content.count("alerting/silence/new") == 1
    assert "service%3Dcheckout" in content and "service%3Dcart" not in content
    assert "#/silences/new" not in content


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_no_silence_link_when_grafana_sent_none(renderer: Renderer, language: str, msgtype: str) -> None:
    group = parse("unified-firing.json")
    alerts = tuple(dataclasses.replace(a, silence_url="") for a in group.alerts)
    content = render_one(renderer, group.with_alerts(alerts), language, msgtype)
    # externalURL is set, yet no Alertmanager-style link is made for Grafana.
    assert "silence" not in content.lower() and "静默" not in content


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_value_string_when_there_are_no_values(renderer: Renderer, language: str, msgtype: str) -> None:
    content = render_one(renderer, parse("unified-resolved.json"), language, msgtype)
    if msgtype == "markdown":
        # Brackets would be markdown: shown as full-width look-alikes.
        assert "［ var='A' labels={instance=db-1:9100} value=71.8 ］" in content
    else:
        assert "[ var='A' labels={instance=db-1:9100} value=71.8 ]" in content
    assert "2026-11-29 21:01:10" in content  # resolved at, Shanghai time
    assert ("仪表盘" if language == "zh" else "Dashboard") not in content  # empty URL: no link


def test_long_value_strings_are_clipped(renderer: Renderer) -> None:
    group = parse("unified-resolved.json")
    alerts = tuple(dataclasses.replace(a, value_string="x" * 5000) for a in group.alerts)
    content = render_one(renderer, group.with_alerts(alerts), "en", "text")
    line = next(line for line in content.splitlines() if line.startswith("Values: "))
    assert line.endswith("…") and len(line) <= len("Values: ") + 256


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_legacy_alerting(renderer: Renderer, language: str, msgtype: str) -> None:
    content = render_one(renderer, parse("legacy-alerting.json"), language, msgtype)
    assert "Web CPU high" in content
    assert "web-1.cpu=97.3, web-2.cpu=91" in content
    assert "CPU 使用率持续 5 分钟超过 90%" in content
    # No times in legacy payloads: when it was received, with no duration.
    assert ("通知时间" if language == "zh" else "Notified") in content and "2026-11-29 23:00:00" in content
    assert "已持续" not in content and "firing for" not in content
    assert "https://grafana.example.org/d/web-hosts/web-hosts?tab=alert&viewPanel=3&orgId=2" in content
    assert "legacy-cpu.png" in content
    assert "静默" not in content and "Silence" not in content
    # An alerting rule needs no state note.
    assert "状态" not in content and "State:" not in content


@pytest.mark.parametrize(
    ("state", "zh", "en"),
    [
        ("no_data", "无数据", "No data"),
        ("pending", "待定（尚未触发）", "Pending (not firing yet)"),
        ("paused", "规则已暂停", "Rule paused"),
    ],
)
@pytest.mark.parametrize("msgtype", ["text", "markdown"])
def test_legacy_state_notes(renderer: Renderer, state: str, zh: str, en: str, msgtype: str) -> None:
    group = parse("legacy-alerting.json", state=state)
    prefix = "> " if msgtype == "markdown" else ""
    assert f"{prefix}状态：{zh}" in render_one(renderer, group, "zh", msgtype)
    assert f"{prefix}State: {en}" in render_one(renderer, group, "en", msgtype)


def test_legacy_ok_is_resolved_without_a_duration(renderer: Renderer) -> None:
    content = render_one(renderer, parse("legacy-ok.json"), "zh", "text")
    assert content.startswith("【已恢复 1 条】Web CPU high")
    assert "通知时间：2026-11-29 23:00:00" in content and "持续" not in content
    assert "数值" not in content


def test_alertmanager_groups_with_a_stray_grafana_state_annotation_show_no_state(renderer: Renderer) -> None:
    group = parse("legacy-alerting.json", state="no_data")
    content = render_one(
        renderer, dataclasses.replace(group, legacy=False, source="alertmanager"), "en", "text"
    )
    assert "State:" not in content


@pytest.mark.parametrize(("channel", "msgtype"), sorted(BYTE_LIMITS))
@pytest.mark.parametrize("language", ["zh", "en"])
def test_big_grafana_groups_split_within_limits(
    renderer: Renderer, channel: str, msgtype: str, language: str
) -> None:
    base = parse("unified-multi.json")
    template = base.alerts[0]
    alerts = tuple(
        dataclasses.replace(
            template,
            labels=MappingProxyType({**template.labels, "service": f"svc-{i:02d}"}),
            fingerprint=f"{i:016x}",
            value_string="[ var='A' labels={service=svc} value=1 ] " * 20,
        )
        for i in range(25)
    )
    messages = render(renderer, base.with_alerts(alerts), language, msgtype, channel)
    assert len(messages) > 1
    assert all(m.byte_count <= m.limit for m in messages)
    everything = "\n".join(m.content for m in messages)
    for i in range(25):
        assert f"svc-{i:02d}" in everything


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unified-firing.json", "数值：A=95.2, C=1"),
        ("legacy-alerting.json", "数值：web-1.cpu=97.3, web-2.cpu=91"),
        ("../alertmanager/firing.json", "E2EHighLatency"),
    ],
)
def test_cli_render_picks_the_parser_by_payload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, expected: str
) -> None:
    from alertbridge.cli import main

    config = tmp_path / "alertbridge.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n[receivers.ops]\nchannel = "console"\nmsgtype = "text"\n',
        encoding="utf-8",
    )
    assert main(["render", "-c", str(config), "--receiver", "ops", "--payload", str(DATA / name)]) == 0
    assert expected in capsys.readouterr().out
