"""Messages an on-call engineer can act on: runbooks and graphs, one silence link
per group, reply hints only where replies are heard, groups without alertname."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from alertbridge.config import load_config
from alertbridge.messengers.wecom.card import build_alert_card, task_id_for
from alertbridge.messengers.wecom.config import ButtonConfig
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.render import Renderer, filters
from alertbridge.render.digest import DigestSection
from alertbridge.render.replies import NO_REPLIES, Replies, replies_for

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


# ---- one silence link per group ---------------------------------------------------

PER_ALERT_SILENCE_DIR = Path(__file__).parent / "data" / "templates"


def storm_group(count: int = 60) -> AlertGroup:
    """The benchmark's CJK group (bench/payloads.py): ``count`` alerts of one alertname."""
    alerts = [
        Alert(
            status=Status.FIRING,
            labels=MappingProxyType(
                {
                    "alertname": "DiskFull000",
                    "instance": f"s000-{i:02d}",
                    "job": "node",
                    "severity": "critical",
                }
            ),
            annotations=MappingProxyType({"summary": f"s000-{i:02d} 磁盘使用率 97%"}),
            starts_at=NOW - timedelta(minutes=3),
            ends_at=None,
            fingerprint=f"{i:010x}5707",
            generator_url="http://prometheus.example.com:9090/graph?g0.expr=disk_used%3E0.95",
        )
        for i in range(count)
    ]
    return group(*alerts)


def alerts_per_message(template: str, templates_dir: Path | None = None) -> float:
    """How many of the 60 storm alerts one zh text app message holds on average."""
    renderer = Renderer(timezone=TZ, templates_dir=templates_dir)
    messages = renderer.render(
        storm_group(), template=template, language="zh", msgtype="text", channel="app", now=NOW, ref=9
    )
    return 60 / len(messages)


def test_one_silence_link_per_group_fits_more_alerts_per_message() -> None:
    before = alerts_per_message("per_alert_silence", PER_ALERT_SILENCE_DIR)
    after = alerts_per_message("default")
    print(f"alerts per 2048-byte zh text message, 60-alert CJK group: before {before:.1f}, after {after:.1f}")
    assert after > before * 1.5


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_no_silence_link_where_readers_can_reply_silence(
    renderer: Renderer, language: str, msgtype: str
) -> None:
    g = group(alert(), alert("web-2:9100"))
    assert render(renderer, g, language, msgtype).count("silences/new") == 1
    hint_only = render(renderer, g, language, msgtype, replies=Replies(ack=True, silence=False))
    assert hint_only.count("silences/new") == 1
    replies = render(renderer, g, language, msgtype, replies=Replies(ack=True, silence=True))
    assert "silences/new" not in replies


def test_group_silence_link_for_grafana_matches_the_common_labels() -> None:
    silence = "https://g/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DHighCPU&matcher=instance%3D{}&orgId=3"
    g = group(
        alert(silence_url=silence.format("web-1")),
        alert("web-2:9100", silence_url=silence.format("web-2")),
        source="grafana",
    )
    url = filters.group_silence_url(g)
    assert url == (
        "https://g/alerting/silence/new?alertmanager=grafana&orgId=3"
        "&matcher=alertname%3DHighCPU&matcher=severity%3Dcritical"
    )
    assert filters.group_silence_url(group(alert(silence_url=silence.format("web-1")), source="grafana")) == (
        silence.format("web-1")
    )


# ---- reply hints only where replies are heard ------------------------------------


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_digest_invites_replies_only_when_they_are_heard(
    renderer: Renderer, language: str, msgtype: str
) -> None:
    sections = [DigestSection(ref=9, group=group(alert()))]

    def digest(channel: str, replies: Replies = NO_REPLIES) -> str:
        (part,) = renderer.render_digest(
            sections, language=language, msgtype=msgtype, channel=channel, now=NOW, replies=replies
        )
        return part.message.content

    for robot in (digest("robot"), digest("app")):
        assert "ack" not in robot and "回复" not in robot and "reply" not in robot
    both = digest("app", Replies(ack=True, silence=True))
    assert "ack" in both and "silence" in both
    ack_only = digest("app", Replies(ack=True))
    assert "ack" in ack_only and "silence" not in ack_only


CONFIG = """
[wecom.apps.heard]
corp_id = "ww1"
agent_id = 1
secret = "s"
token = "t"
encoding_aes_key = "{key}"

[wecom.apps.deaf]
corp_id = "ww1"
agent_id = 2
secret = "s"

[silencers.am]
kind = "alertmanager"
url = ["http://am:9093"]

[receivers.app-heard]
channel = "app"
app = "heard"
to_user = ["zhangsan"]

[receivers.app-deaf]
channel = "app"
app = "deaf"
to_user = ["zhangsan"]

[receivers.room]
channel = "robot"
robot_key = "k"

[receivers.app-party]
channel = "app"
app = "heard"
to_party = ["2"]

[receivers.app-party-listed]
channel = "app"
app = "heard"
to_party = ["2"]
allow_silence = ["tag:7"]
"""


def test_replies_for_follows_the_callback_and_the_silencer(tmp_path: Path) -> None:
    path = tmp_path / "alertbridge.toml"
    path.write_text(CONFIG.format(key="a" * 43), encoding="utf-8")
    config = load_config(path, {})
    assert replies_for(config, "app-heard") == Replies(ack=True, silence=True)
    assert replies_for(config, "app-deaf") == NO_REPLIES
    assert replies_for(config, "room") == NO_REPLIES
    # Nobody may act for a department until an allow-list says who: no hints.
    assert replies_for(config, "app-party") == NO_REPLIES
    assert replies_for(config, "app-party-listed") == Replies(ack=False, silence=True)


# ---- groups without alertname, distinguishing labels, Grafana's title/message ------


def nameless(instance: str = "db-1:9104") -> Alert:
    return alert(instance, labels={"alertname": "", "job": "mysql", "team": "支付"})


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_a_group_without_alertname_still_has_a_title(renderer: Renderer, language: str, msgtype: str) -> None:
    g = AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key="{}:{}",
        alerts=(nameless(),),
        common_labels=nameless().labels,
    )
    content = render(renderer, g, language, msgtype)
    title = content.splitlines()[0]
    assert "job=mysql" in title
    assert "instance=db-1:9104" in content  # the alert's own line names it


def test_card_title_is_never_the_english_word_alerts() -> None:
    g = AlertGroup(
        source="alertmanager", status=Status.FIRING, group_key="{}:{}", alerts=(nameless(),), common_labels={}
    )
    card = _card(g, "zh")
    title = card["main_title"]["title"]  # type: ignore[index]
    assert "alerts" not in title and "instance=db-1:9104" in title


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_labels_that_tell_alerts_apart_are_shown(renderer: Renderer, language: str, msgtype: str) -> None:
    g = group(
        alert(labels={"mountpoint": "/data", "device": "sdb", "team": "dba"}),
        alert(labels={"mountpoint": "/var", "device": "sdc", "team": "dba"}),
    )
    content = render(renderer, g, language, msgtype)
    assert "device=sdb, mountpoint=/data" in content and "device=sdc, mountpoint=/var" in content
    assert "team=dba" in content  # shared, once for the group
    assert content.count("team=dba") == 1


@pytest.mark.parametrize(("language", "msgtype"), FOUR)
def test_grafana_custom_title_and_message_are_used_default_ones_not(
    renderer: Renderer, language: str, msgtype: str
) -> None:
    custom = group(alert(), source="grafana", title="支付库磁盘将满", message="请联系 DBA 值班：8800")
    content = render(renderer, custom, language, msgtype)
    assert "支付库磁盘将满" in content.splitlines()[0]
    assert "请联系 DBA 值班：8800" in content
    default = group(
        alert(),
        source="grafana",
        title="[FIRING:1] HighCPU (web-1:9100 critical)",
        message="**Firing**\n\nValue: A=1\nLabels:\n - alertname = HighCPU\n",
    )
    plain = render(renderer, default, language, msgtype)
    assert "HighCPU" in plain.splitlines()[0] and "[FIRING:1] HighCPU (" not in plain
    assert "Value: A=1" not in plain
    no_name = AlertGroup(
        source="grafana",
        status=Status.FIRING,
        group_key="{}:{}",
        alerts=(nameless(),),
        title="[FIRING:1] 磁盘告警 (db-1)",
    )
    assert "磁盘告警 (db-1)" in render(renderer, no_name, language, msgtype).splitlines()[0]
