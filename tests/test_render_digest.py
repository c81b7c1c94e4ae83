"""Digests: many groups, one line per alert, every part within WeCom's byte limit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alertbridge.messengers.registry import byte_limit
from alertbridge.model import Ack, Alert, AlertGroup, Status
from alertbridge.render import Renderer
from alertbridge.render.digest import DigestSection

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MARKER = re.compile(r"host-\d+-\d+")


def group(number: int, alerts: int, *, summary: str = "磁盘使用率超过 90%") -> AlertGroup:
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key=f"g{number}",
        alerts=tuple(
            Alert(
                status=Status.RESOLVED if i % 3 == 2 else Status.FIRING,
                labels={"alertname": "DiskFull", "instance": f"host-{number}-{i}"},
                annotations={"summary": summary},
                starts_at=NOW - timedelta(minutes=5),
                ends_at=NOW if i % 3 == 2 else None,
                fingerprint=f"{number:04x}{i:04x}",
            )
            for i in range(alerts)
        ),
        group_labels={"alertname": "DiskFull"},
        common_labels={"alertname": "DiskFull"},
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(timezone=ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize(
    ("channel", "msgtype"), [("app", "markdown"), ("app", "text"), ("robot", "markdown")]
)
def test_every_alert_has_one_line_in_exactly_one_part(
    renderer: Renderer, language: str, channel: str, msgtype: str
) -> None:
    sections = [DigestSection(ref=100 + n, group=group(n, alerts=1 + n % 7)) for n in range(60)]
    parts = renderer.render_digest(
        sections, language=language, msgtype=msgtype, channel=channel, now=NOW, mentions=("<@zhangsan>",)
    )
    assert len(parts) > 1
    limit = byte_limit(channel, msgtype)
    seen: list[str] = []
    for number, part in enumerate(parts, 1):
        assert part.message.byte_count <= limit
        assert (part.message.part, part.message.parts) == (number, len(parts))
        seen.extend(MARKER.findall(part.message.content))
    expected = [f"host-{n}-{i}" for n in range(60) for i in range(1 + n % 7)]
    assert sorted(seen) == sorted(expected)
    # Each reference is finished by exactly one part: the one with its last alert.
    done = [ref for part in parts for ref in part.refs_done]
    assert sorted(done) == [100 + n for n in range(60)]
    for part in parts:
        for ref in part.refs_done:
            shown = group(ref - 100, alerts=1 + (ref - 100) % 7)
            last = (*shown.firing, *shown.resolved)[-1]  # firing alerts are listed first
            assert last.labels["instance"] in part.message.content
    # Robot markdown mentions go on the last part only.
    assert "<@zhangsan>" in parts[-1].message.content
    assert not any("<@zhangsan>" in part.message.content for part in parts[:-1])


def test_a_section_shows_its_reference_status_and_ack(renderer: Renderer) -> None:
    sections = [
        DigestSection(ref=27, group=group(1, alerts=3), ack=Ack(user="lisi", at=NOW)),
        DigestSection(ref=28, group=group(2, alerts=1)),
    ]
    (part,) = renderer.render_digest(sections, language="zh", msgtype="markdown", channel="app", now=NOW)
    text = part.message.content
    assert "【告警汇总】2 组 · 告警 3 条 · 已恢复 1 条" in text
    assert "#27 DiskFull" in text and "已确认 · lisi" in text
    assert "🔥 host-1-0 · 磁盘使用率超过 90%" in text
    assert "✅ host-1-2" in text
    assert part.refs_done == (27, 28)
    (english,) = renderer.render_digest(sections, language="en", msgtype="text", channel="app", now=NOW)
    assert "[DIGEST] 2 groups, 3 firing, 1 resolved" in english.message.content
    assert "[RESOLVED] host-1-2" in english.message.content


def test_a_huge_summary_is_clipped_to_one_line(renderer: Renderer) -> None:
    sections = [DigestSection(ref=1, group=group(1, alerts=2, summary="很长的摘要\n第二行" * 200))]
    (part,) = renderer.render_digest(sections, language="zh", msgtype="text", channel="app", now=NOW)
    lines = [line for line in part.message.content.splitlines() if "host-1-" in line]
    assert len(lines) == 2
    assert all(len(line) < 140 and line.endswith("…") for line in lines)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_parts_already_sent_come_out_the_same_when_newer_groups_join(
    renderer: Renderer, language: str
) -> None:
    """After a crash the backlog is merged again with whatever arrived since; the
    parts WeCom already has must be byte-identical so its duplicate check hides them."""
    before = [DigestSection(ref=n, group=group(n, alerts=4)) for n in range(40)]
    after = [*before, *(DigestSection(ref=n, group=group(n, alerts=4)) for n in range(40, 55))]
    first = renderer.render_digest(before, language=language, msgtype="markdown", channel="app", now=NOW)
    again = renderer.render_digest(after, language=language, msgtype="markdown", channel="app", now=NOW)
    assert len(again) > len(first) > 2
    for old, new in zip(first[:-1], again, strict=False):
        assert old.message.content == new.message.content
