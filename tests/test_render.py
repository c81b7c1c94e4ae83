"""Renderer and the default templates: content, splitting to byte limits, template errors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alertbridge.errors import TemplateError
from alertbridge.message import RenderedMessage
from alertbridge.messengers.registry import BYTE_LIMITS
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.render import Renderer, sample_group
from alertbridge.render.environment import builtin_templates_dir

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 29, 15, 13, 53, tzinfo=UTC)
STARTED = datetime(2026, 11, 29, 12, 8, 44, tzinfo=UTC)  # 20:08:44 in Shanghai, 3h5m before NOW
AM_URL = "http://am.example.org:9093"
COMBOS = sorted(BYTE_LIMITS)  # every (channel, msgtype)
# Those whose template renders whole messages under a title line; textcard and
# news templates render descriptions, titled in code (tests/test_msgtypes.py).
TITLED = [combo for combo in COMBOS if combo[1] not in ("textcard", "news")]


def make_alert(
    name: str = "HighCPU",
    *,
    status: Status = Status.FIRING,
    instance: str = "web-1:9100",
    starts_at: datetime = STARTED,
    ends_at: datetime | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    fingerprint: str = "0123456789abcdef",
    generator_url: str = "http://prom:9090/graph?g0.expr=up",
) -> Alert:
    all_labels = {"alertname": name, "instance": instance, "severity": "critical", **(labels or {})}
    return Alert(
        status=status,
        labels=MappingProxyType(dict(sorted(all_labels.items()))),
        annotations=MappingProxyType(dict(annotations or {})),
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint,
        generator_url=generator_url,
    )


def make_group(
    *alerts: Alert, truncated: int = 0, external_url: str = AM_URL, common: bool = True
) -> AlertGroup:
    common_labels: dict[str, str] = {}
    if common:
        first = alerts[0].labels
        common_labels = {k: v for k, v in first.items() if all(a.labels.get(k) == v for a in alerts)}
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED,
        group_key='{}:{alertname="HighCPU"}',
        alerts=alerts,
        group_labels=MappingProxyType({"alertname": alerts[0].name}) if common else MappingProxyType({}),
        common_labels=MappingProxyType(common_labels),
        external_url=external_url,
        truncated_alerts=truncated,
    )


def resolved(instance: str = "web-9:9100", **kwargs: object) -> Alert:
    return make_alert(
        status=Status.RESOLVED,
        instance=instance,
        ends_at=STARTED + timedelta(minutes=1, seconds=1),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(timezone=SHANGHAI)


def render(
    renderer: Renderer,
    group: AlertGroup,
    language: str = "zh",
    msgtype: str = "markdown",
    channel: str = "app",
    now: datetime = NOW,
) -> list[RenderedMessage]:
    return renderer.render(
        group, template="default", language=language, msgtype=msgtype, channel=channel, now=now
    )


def render_one(renderer: Renderer, group: AlertGroup, language: str = "zh", msgtype: str = "markdown") -> str:
    [message] = render(renderer, group, language, msgtype)
    assert (message.part, message.parts) == (1, 1)
    return message.content


# --- the default templates ---------------------------------------------------


def test_zh_markdown_golden(renderer: Renderer) -> None:
    group = make_group(
        make_alert(annotations={"summary": "CPU 使用率过高", "description": "当前 97%"}),
        resolved(instance="web-2:9100", annotations={"summary": "CPU 使用率过高"}),
    )
    silence = AM_URL + "/#/silences/new?filter=%7Balertname%3D%22HighCPU%22%2Cseverity%3D%22critical%22%7D"
    assert render_one(renderer, group) == "\n".join(
        [
            '### <font color="warning">【告警 1 条 · 已恢复 1 条】HighCPU</font>',
            f"[静默本组]({silence})",
            "",
            '**1. HighCPU** <font color="warning">告警中</font> · critical',
            "> 目标：web-1:9100",
            "> 摘要：CPU 使用率过高",
            "> 描述：当前 97%",
            "> 开始：2026-11-29 20:08:44（已持续 3小时5分）",
            "> [查看图表](http://prom:9090/graph?g0.expr=up)",
            "",
            '**2. HighCPU** <font color="info">已恢复</font> · critical',
            "> 目标：web-2:9100",
            "> 摘要：CPU 使用率过高",
            "> 开始：2026-11-29 20:08:44",
            "> 恢复：2026-11-29 20:09:45（持续 1分1秒）",
            "> [查看图表](http://prom:9090/graph?g0.expr=up)",
        ]
    )


FOUR_OF_THEM = [
    ("zh", "markdown", '### <font color="warning">【告警 3 条 · 已恢复 1 条】HighCPU</font>'),
    ("zh", "text", "【告警 3 条 · 已恢复 1 条】HighCPU"),
    ("en", "markdown", '### <font color="warning">[FIRING:3, RESOLVED:1] HighCPU</font>'),
    ("en", "text", "[FIRING:3, RESOLVED:1] HighCPU"),
]


@pytest.mark.parametrize(("language", "msgtype", "title"), FOUR_OF_THEM)
def test_title_counts_firing_and_resolved(
    renderer: Renderer, language: str, msgtype: str, title: str
) -> None:
    group = make_group(
        make_alert(instance="a:1"),
        resolved(instance="d:4"),
        make_alert(instance="b:2"),
        make_alert(instance="c:3"),
    )
    assert render_one(renderer, group, language, msgtype).splitlines()[0] == title


@pytest.mark.parametrize(
    ("language", "msgtype", "title"),
    [
        ("zh", "markdown", '### <font color="info">【已恢复 2 条】HighCPU</font>'),
        ("zh", "text", "【已恢复 2 条】HighCPU"),
        ("en", "markdown", '### <font color="info">[RESOLVED:2] HighCPU</font>'),
        ("en", "text", "[RESOLVED:2] HighCPU"),
    ],
)
def test_title_of_an_all_resolved_group(renderer: Renderer, language: str, msgtype: str, title: str) -> None:
    group = make_group(resolved(instance="a:1"), resolved(instance="b:2"))
    assert render_one(renderer, group, language, msgtype).splitlines()[0] == title


def test_title_names_distinct_alerts_without_a_common_name(renderer: Renderer) -> None:
    group = make_group(make_alert("DiskFull"), make_alert("HighCPU"), make_alert("DiskFull"), common=False)
    assert render_one(renderer, group, "en", "text").splitlines()[0] == "[FIRING:3] DiskFull, HighCPU"


@pytest.mark.parametrize(
    ("language", "msgtype", "firing_line", "resolved_lines"),
    [
        ("zh", "markdown", "> 开始：2026-11-29 20:08:44（已持续 3小时5分）",
         ["> 开始：2026-11-29 20:08:44", "> 恢复：2026-11-29 20:09:45（持续 1分1秒）"]),
        ("zh", "text", "开始：2026-11-29 20:08:44（已持续 3小时5分）",
         ["开始：2026-11-29 20:08:44", "恢复：2026-11-29 20:09:45（持续 1分1秒）"]),
        ("en", "markdown", "> Started: 2026-11-29 20:08:44 (firing for 3h 5m)",
         ["> Started: 2026-11-29 20:08:44", "> Resolved: 2026-11-29 20:09:45 (lasted 1m 1s)"]),
        ("en", "text", "Started: 2026-11-29 20:08:44 (firing for 3h 5m)",
         ["Started: 2026-11-29 20:08:44", "Resolved: 2026-11-29 20:09:45 (lasted 1m 1s)"]),
    ],
)  # fmt: skip
def test_times_in_configured_timezone_with_durations(
    renderer: Renderer, language: str, msgtype: str, firing_line: str, resolved_lines: list[str]
) -> None:
    lines = render_one(renderer, make_group(make_alert(), resolved()), language, msgtype).splitlines()
    assert firing_line in lines
    start = lines.index(resolved_lines[0])
    assert lines[start : start + 2] == resolved_lines


def test_timezone_comes_from_the_renderer() -> None:
    utc = Renderer(timezone=ZoneInfo("UTC"))
    assert "开始：2026-11-29 12:08:44（已持续 3小时5分）" in render_one(
        utc, make_group(make_alert()), "zh", "text"
    )


def test_duration_is_measured_to_now(renderer: Renderer) -> None:
    later = NOW + timedelta(days=2)
    [message] = render(renderer, make_group(make_alert()), "en", "text", now=later)
    assert "(firing for 2d 3h)" in message.content


@pytest.mark.parametrize(("language", "msgtype"), [(lang, mt) for lang, mt, _ in FOUR_OF_THEM])
def test_silence_link_for_firing_alerts_only(renderer: Renderer, language: str, msgtype: str) -> None:
    group = make_group(make_alert(labels={"team": "支付"}), resolved(instance="web-2:9100"))
    content = render_one(renderer, group, language, msgtype)
    prefix = AM_URL + "/#/silences/new?filter="
    assert content.count(prefix) == 1
    encoded = content.split(prefix, 1)[1].split(")", 1)[0].split("\n", 1)[0]
    # One link for the group, matching the labels all its alerts share.
    assert unquote(encoded) == '{alertname="HighCPU",severity="critical"}'
    resolved_only = make_group(resolved(instance="web-2:9100"))
    assert prefix not in render_one(renderer, resolved_only, language, msgtype)


def test_no_silence_link_without_external_url(renderer: Renderer) -> None:
    content = render_one(renderer, make_group(make_alert(), external_url=""), "zh", "markdown")
    assert "silences/new" not in content
    assert content.splitlines()[-1] == "> [查看图表](http://prom:9090/graph?g0.expr=up)"
    bare = make_group(make_alert(generator_url=""), external_url="")
    assert render_one(renderer, bare, "zh", "markdown").splitlines()[-1].startswith("> 开始：")


@pytest.mark.parametrize(
    ("language", "msgtype", "line"),
    [
        ("zh", "markdown", '<font color="comment">另有 7 条告警未显示（max_alerts）</font>'),
        ("zh", "text", "另有 7 条告警未显示（max_alerts）"),
        ("en", "markdown", '<font color="comment">+7 more alerts not shown (max_alerts)</font>'),
        ("en", "text", "+7 more alerts not shown (max_alerts)"),
    ],
)
def test_truncated_alerts_are_announced(renderer: Renderer, language: str, msgtype: str, line: str) -> None:
    lines = render_one(renderer, make_group(make_alert(), truncated=7), language, msgtype).splitlines()
    assert lines[1] == line
    untruncated = render_one(renderer, make_group(make_alert()), language, msgtype)
    assert "max_alerts" not in untruncated


def test_firing_listed_before_resolved_in_source_order(renderer: Renderer) -> None:
    group = make_group(
        resolved(instance="r1:1"),
        make_alert(instance="f1:1"),
        resolved(instance="r2:2"),
        make_alert(instance="f2:2"),
    )
    content = render_one(renderer, group, "en", "text")
    headlines = [line for line in content.splitlines() if line[:1].isdigit()]
    assert headlines == [
        "1. HighCPU [FIRING] critical",
        "2. HighCPU [FIRING] critical",
        "3. HighCPU [RESOLVED] critical",
        "4. HighCPU [RESOLVED] critical",
    ]
    targets = [line for line in content.splitlines() if line.startswith("Target: ")]
    assert targets == ["Target: f1:1", "Target: f2:2", "Target: r1:1", "Target: r2:2"]


def test_target_falls_back_from_instance(renderer: Renderer) -> None:
    alert = make_alert(instance="")
    alert = Alert(
        status=alert.status,
        labels=MappingProxyType({"alertname": "PodCrash", "job": "kube-state-metrics", "pod": "api-7d9"}),
        annotations=alert.annotations,
        starts_at=alert.starts_at,
        ends_at=None,
        fingerprint="f",
    )
    assert "Target: api-7d9" in render_one(renderer, make_group(alert), "en", "text")


def test_markdown_escapes_values_text_does_not(renderer: Renderer) -> None:
    group = make_group(make_alert("Disk_Full", annotations={"summary": "**boom** [x](y)\n# not a heading"}))
    markdown = render_one(renderer, group, "en", "markdown")
    assert "**1. Disk_Full**" in markdown
    assert "> Summary: ＊＊boom＊＊ ［x］(y) # not a heading" in markdown.splitlines()
    text = render_one(renderer, group, "en", "text")
    assert "1. Disk_Full [FIRING] critical" in text
    assert "Summary: **boom** [x](y)\n# not a heading" in text


# --- splitting to the byte limit ---------------------------------------------


def _many(n: int) -> AlertGroup:
    alerts = [
        make_alert(
            instance=f"host-{i:02d}:9100",
            annotations={
                "summary": f"第 {i} 台主机 CPU 使用率过高",
                "description": "持续 5 分钟超过 90%",
            },
            fingerprint=f"{i:016x}",
        )
        for i in range(n)
    ]
    return make_group(*alerts, truncated=3)


@pytest.mark.parametrize(("channel", "msgtype"), TITLED)
@pytest.mark.parametrize("language", ["zh", "en"])
def test_large_group_is_split_between_alerts(
    renderer: Renderer, channel: str, msgtype: str, language: str
) -> None:
    group = _many(30)
    messages = render(renderer, group, language, msgtype, channel)
    n = len(messages)
    assert n > 1
    for number, message in enumerate(messages, 1):
        assert (message.part, message.parts, message.msgtype) == (number, n, msgtype)
        assert message.limit == BYTE_LIMITS[(channel, msgtype)]
        assert message.byte_count <= message.limit
        title = message.content.splitlines()[0]
        assert title.endswith(f"({number}/{n})")
        assert ("【告警 30 条】HighCPU" if language == "zh" else "[FIRING:30] HighCPU") in title
        assert "…" not in message.content  # nothing needed cutting
    everything = "\n".join(m.content for m in messages)
    for i in range(30):
        assert everything.count(f"host-{i:02d}:9100") == 1
    # Numbering continues across parts; the max_alerts note is said once.
    headlines = [
        line for m in messages for line in m.content.splitlines() if "HighCPU" in line and ". " in line
    ]
    assert [int(line.lstrip("*").split(".")[0]) for line in headlines] == list(range(1, 31))
    assert everything.count("max_alerts") == 1
    assert "max_alerts" in messages[0].content


@pytest.mark.parametrize(("language", "marker"), [("zh", "…（已截断）"), ("en", "… (truncated)")])
def test_an_alert_too_big_alone_is_cut_with_a_marker(renderer: Renderer, language: str, marker: str) -> None:
    huge = make_alert(
        "HugeAlert",
        instance="huge:1",
        labels={"blob": "数据" * 2000},
        # Clipped summary and description together still exceed 2048 bytes.
        annotations={"summary": "摘要" * 2000, "description": "描述" * 2000},
    )
    group = make_group(make_alert(instance="small-1:1"), huge, make_alert(instance="small-2:2"), common=False)
    messages = render(renderer, group, language, "markdown", "app")
    assert [m.parts for m in messages] == [3, 3, 3]
    assert all(m.byte_count <= 2048 for m in messages)
    assert "small-1:1" in messages[0].content and "small-2:2" in messages[2].content
    cut = messages[1].content
    assert cut.endswith(marker)
    assert "**2. HugeAlert**" in cut
    assert 2048 - 4 <= messages[1].byte_count <= 2048  # cut as late as possible, not early


def test_huge_names_are_clipped_so_the_alert_still_shows(renderer: Renderer) -> None:
    group = make_group(make_alert("告" * 5000, annotations={"summary": "still here"}), external_url="")
    for language, msgtype in (("en", "text"), ("en", "markdown")):
        content = render_one(renderer, group, language, msgtype)
        assert "still here" in content and not content.endswith("(truncated)")
        assert "告" * 127 + "…" in content


def test_header_too_big_alone_still_fits(tmp_path: Path) -> None:
    (tmp_path / "big.text.j2").write_text("{{ 'H' * 5000 }}\n{% for a in alerts %}{{ a.name }}\n{% endfor %}")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    group = make_group(make_alert(), make_alert(instance="b:2"))
    messages = custom.render(group, template="big", language="en", msgtype="text", channel="app", now=NOW)
    assert len(messages) == 2
    assert all(m.byte_count <= 2048 and m.content.endswith("… (truncated)") for m in messages)


def test_rendering_is_deterministic(renderer: Renderer) -> None:
    group = _many(25)
    first = render(renderer, group, "zh", "markdown", "app")
    assert render(renderer, group, "zh", "markdown", "app") == first
    assert render(Renderer(timezone=SHANGHAI), group, "zh", "markdown", "app") == first


# --- property: no message over the limit, no alert lost ----------------------

_CHARS = st.characters(codec="utf-8", exclude_characters="§")
_NASTY = st.sampled_from(
    [
        "告警",
        "磁盘空间不足",
        "😀",
        "👨‍👩‍👧",
        "*",
        "_",
        "`",
        "[x](y)",
        '<font color="warning">',
        "\\",
        "\n",
        "# ",
        "> ",
        "%",
        '"',
        " ",
    ]
)
_VALUES = st.one_of(
    st.text(_CHARS, max_size=30),
    st.lists(_NASTY, max_size=30).map("".join),
    # Very long, built by repetition: cheap to draw, so big groups stay affordable.
    st.tuples(st.text(_CHARS, min_size=1, max_size=8), st.integers(min_value=30, max_value=800)).map(
        lambda pair: pair[0] * pair[1]
    ),
)
_LABEL_NAMES = st.sampled_from(
    [
        "instance",
        "job",
        "pod",
        "node",
        "severity",
        "team",
        "namespace",
        "service",
        "le",
        "_x",
        "团队",
        "a.b-c",
    ]
)


@st.composite
def alert_groups(draw: st.DrawFn) -> AlertGroup:
    """Random groups; alert i's name starts with the unique token §i§ that no value contains.

    Values come from a per-group pool (as alerts of one group share most
    label values): drawing hundreds of independent strings would make
    generation, not rendering, the cost of this test.
    """
    values = st.sampled_from(draw(st.lists(_VALUES, min_size=1, max_size=12)))
    alerts = []
    # Biased towards big groups: they are what gets split.
    for i in range(draw(st.integers(min_value=1, max_value=60) | st.integers(min_value=40, max_value=60))):
        status = draw(st.sampled_from(Status))
        labels = draw(st.dictionaries(_LABEL_NAMES, values, max_size=4))
        labels["alertname"] = f"§{i}§" + draw(values)
        annotations = draw(
            st.dictionaries(
                st.sampled_from(["summary", "description", "message", "runbook_url"]),
                values,
                max_size=3,
            )
        )
        starts_at = NOW - timedelta(seconds=draw(st.integers(min_value=0, max_value=10**7)))
        ends_at = (
            None if status is Status.FIRING else starts_at + timedelta(seconds=draw(st.integers(0, 10**6)))
        )
        alerts.append(
            Alert(
                status=status,
                labels=MappingProxyType(labels),
                annotations=MappingProxyType(annotations),
                starts_at=starts_at,
                ends_at=ends_at,
                fingerprint=f"{i:016x}",
                generator_url=draw(st.sampled_from(["", f"http://prom:9090/graph?g0.expr=up&n={i}"])),
            )
        )
    first = alerts[0].labels
    common = {k: v for k, v in first.items() if all(a.labels.get(k) == v for a in alerts)}
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED,
        group_key="k",
        alerts=tuple(alerts),
        group_labels=MappingProxyType(draw(st.dictionaries(_LABEL_NAMES, values, max_size=2))),
        common_labels=MappingProxyType(common),
        external_url=draw(st.sampled_from(["", AM_URL])),
        truncated_alerts=draw(st.integers(min_value=0, max_value=10**6)),
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(alert_groups(), st.sampled_from(TITLED), st.sampled_from(["zh", "en"]))
def test_every_message_fits_and_no_alert_is_lost(
    renderer: Renderer, group: AlertGroup, combo: tuple[str, str], language: str
) -> None:
    channel, msgtype = combo
    messages = render(renderer, group, language, msgtype, channel)
    limit = BYTE_LIMITS[combo]
    n = len(messages)
    event(f"parts: {'1' if n == 1 else '2-5' if n <= 5 else '6+'}")
    size = len(group.alerts)
    event(f"alerts: {'1-9' if size < 10 else '10-39' if size < 40 else '40+'}")
    event(f"cut: {any(m.content.endswith(('（已截断）', '(truncated)')) for m in messages)}")
    assert n >= 1
    for number, message in enumerate(messages, 1):
        assert message.byte_count <= limit
        assert (message.part, message.parts, message.limit) == (number, n, limit)
        title = message.content.split("\n", 1)[0]
        marker = f"({number}/{n})"
        assert title.endswith(marker) if n > 1 else not title.endswith("(1/1)")
    # The title may name alerts; below it, each alert's token appears exactly once.
    bodies = "\n".join(m.content.split("\n", 1)[1] if "\n" in m.content else "" for m in messages)
    for i in range(len(group.alerts)):
        assert bodies.count(f"§{i}§") == 1, f"alert {i} appears {bodies.count(f'§{i}§')} times"


# --- templates: lookup, overrides, errors ------------------------------------


def test_builtin_templates_ship_all_four_defaults() -> None:
    builtin = builtin_templates_dir()
    assert builtin is not None
    for language in ("zh", "en"):
        for msgtype in ("text", "markdown"):
            assert (builtin / f"default.{language}.{msgtype}.j2").is_file()


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("msgtype", ["text", "markdown"])
def test_check_passes_for_the_defaults(renderer: Renderer, language: str, msgtype: str) -> None:
    renderer.check("default", language, msgtype)


def test_custom_dir_overrides_the_default(tmp_path: Path) -> None:
    (tmp_path / "default.zh.text.j2").write_text("自定义 {{ alerts | length }} 条")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    group = make_group(make_alert())
    assert (
        custom.render(group, template="default", language="zh", msgtype="text", channel="app", now=NOW)[
            0
        ].content
        == "自定义 1 条"
    )
    # Files the directory does not have still come from the built-ins.
    assert custom.render(group, template="default", language="en", msgtype="text", channel="app", now=NOW)[
        0
    ].content.startswith("[FIRING:1] HighCPU")


def test_generic_template_serves_every_language(tmp_path: Path) -> None:
    (tmp_path / "oncall.markdown.j2").write_text("{{ language }}: {{ group.alerts[0].name }}")
    (tmp_path / "default.markdown.j2").write_text("generic default")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    group = make_group(make_alert())
    for language in ("zh", "en"):
        [message] = custom.render(
            group,
            template="oncall",
            language=language,
            msgtype="markdown",
            channel="robot",
            now=NOW,
        )
        assert message.content == f"{language}: HighCPU"
        # An operator's generic file beats the built-in language-specific one.
        [message] = custom.render(
            group, template="default", language=language, msgtype="markdown", channel="app", now=NOW
        )
        assert message.content == "generic default"


def test_language_specific_beats_generic_in_the_same_dir(tmp_path: Path) -> None:
    (tmp_path / "t.text.j2").write_text("generic")
    (tmp_path / "t.en.text.j2").write_text("english")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    group = make_group(make_alert())
    assert (
        custom.render(group, template="t", language="en", msgtype="text", channel="app", now=NOW)[0].content
        == "english"
    )
    assert (
        custom.render(group, template="t", language="zh", msgtype="text", channel="app", now=NOW)[0].content
        == "generic"
    )


def test_custom_template_can_use_builtin_macros_and_filters(tmp_path: Path) -> None:
    (tmp_path / "mine.text.j2").write_text(
        '{% import "_macros.j2" as m %}{% set a = alerts[0] %}'
        "{{ m.group_name(group) }}|{{ m.target(a) }}|{{ a.starts_at | localtime('%H:%M') }}"
        "|{{ a.starts_at | since }}|{{ (now - a.starts_at) | humanize_duration }}"
        "|{{ a.labels | without('alertname', 'severity') }}|{{ a.labels | only('severity') }}"
        "|{{ 'a*b' | md_escape }}|{{ tz }}|{{ part }}/{{ parts }}|{{ channel }}"
    )
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    [message] = custom.render(
        make_group(make_alert()),
        template="mine",
        language="en",
        msgtype="text",
        channel="app",
        now=NOW,
    )
    assert message.content == (
        "HighCPU|web-1:9100|20:08|3h 5m|3h 5m"
        "|[('instance', 'web-1:9100')]|[('severity', 'critical')]"
        "|a＊b|Asia/Shanghai|1/1|app"
    )


def test_missing_template_names_the_file(renderer: Renderer) -> None:
    with pytest.raises(TemplateError) as info:
        renderer.check("nosuch", "zh", "markdown")
    assert info.value.template == "nosuch.zh.markdown.j2"
    assert "nosuch.markdown.j2" in str(info.value)


def test_syntax_error_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.zh.text.j2").write_text("line one\nline two\n{% if group %}\nunclosed\n")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    with pytest.raises(TemplateError) as info:
        custom.check("broken", "zh", "text")
    assert info.value.template.endswith("broken.zh.text.j2")
    assert info.value.lineno == 4
    assert "broken.zh.text.j2:4" in str(info.value)


def test_syntax_error_in_an_imported_file(tmp_path: Path) -> None:
    (tmp_path / "_bad.j2").write_text("{% macro x() %}\n{{ }\n{% endmacro %}")
    (tmp_path / "uses.text.j2").write_text('{% import "_bad.j2" as b %}{{ b.x() }}')
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    with pytest.raises(TemplateError) as info:
        custom.check("uses", "en", "text")
    assert info.value.template.endswith("_bad.j2")
    assert info.value.lineno == 2


def test_undefined_variable_fails_at_render_with_line(tmp_path: Path) -> None:
    (tmp_path / "strict.text.j2").write_text("ok\n{{ group.no_such_field }}\n")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    with pytest.raises(TemplateError) as info:
        custom.render(
            make_group(make_alert()),
            template="strict",
            language="en",
            msgtype="text",
            channel="app",
            now=NOW,
        )
    assert info.value.template.endswith("strict.text.j2")
    assert info.value.lineno == 2
    assert "no_such_field" in info.value.problem
    # check() finds it before any alert arrives.
    with pytest.raises(TemplateError):
        custom.check("strict", "en", "text")


def test_missing_label_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    (tmp_path / "labels.text.j2").write_text("{{ alerts[0].labels.no_such_label }}")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    with pytest.raises(TemplateError):
        custom.check("labels", "zh", "text")


def test_filter_misuse_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "typo.text.j2").write_text("{{ 'not a date' | localtime }}")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    with pytest.raises(TemplateError) as info:
        custom.check("typo", "zh", "text")
    assert "AttributeError" in info.value.problem


def test_empty_output_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "blank.text.j2").write_text("{% if false %}never{% endif %}\n  \n")
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    with pytest.raises(TemplateError, match="empty"):
        custom.check("blank", "zh", "text")


def test_compiled_templates_are_cached_per_renderer(tmp_path: Path) -> None:
    path = tmp_path / "cached.text.j2"
    path.write_text("version one")
    group = make_group(make_alert())
    first = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    assert (
        first.render(group, template="cached", language="en", msgtype="text", channel="app", now=NOW)[
            0
        ].content
        == "version one"
    )
    path.write_text("version two, longer so the size differs")
    # The first renderer keeps what it compiled (a render never touches the disk
    # again); a new one — a config reload — sees the change.
    assert (
        first.render(group, template="cached", language="en", msgtype="text", channel="app", now=NOW)[
            0
        ].content
        == "version one"
    )
    second = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    assert second.render(group, template="cached", language="en", msgtype="text", channel="app", now=NOW)[
        0
    ].content.startswith("version two")


def test_render_rejects_naive_now_and_unknown_channel(renderer: Renderer) -> None:
    group = make_group(make_alert())
    with pytest.raises(ValueError, match="aware"):
        render(renderer, group, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="pager"):
        render(renderer, group, channel="pager")


def test_lone_surrogates_do_not_break_rendering(renderer: Renderer) -> None:
    group = make_group(make_alert(annotations={"summary": "bad \ud800 half"}))
    content = render_one(renderer, group, "en", "text")
    assert "bad ? half" in content
    content.encode("utf-8")


# --- sample data --------------------------------------------------------------


def test_sample_group_has_one_firing_and_one_resolved_alert_with_cjk() -> None:
    group = sample_group(NOW)
    assert [a.status for a in group.alerts] == [Status.FIRING, Status.RESOLVED]
    assert all(a.starts_at < NOW for a in group.alerts)
    resolved_alert = group.alerts[1]
    assert resolved_alert.ends_at is not None and resolved_alert.starts_at < resolved_alert.ends_at <= NOW
    assert any(ord(ch) > 0x3000 for a in group.alerts for v in a.annotations.values() for ch in v)
    assert group.external_url
    assert sample_group(NOW) == group  # deterministic for a given now
    assert sample_group().alerts[0].starts_at.tzinfo is not None


def test_sample_group_renders_in_every_combination(renderer: Renderer) -> None:
    group = sample_group(NOW)
    for channel, msgtype in COMBOS:
        for language in ("zh", "en"):
            [message] = render(renderer, group, language, msgtype, channel)
            assert "HighCPU" in message.content and message.byte_count <= message.limit
