"""Alert cards: WeCom ``template_card`` of type ``button_interaction``, and
``text_notice`` / ``news_notice`` for receivers without commands (robots).

A card shows one alert group compactly — status, reference and the key facts
— with buttons (确认, 静默1小时 …) whose keys carry the action and the
reference. WeCom limits each part of a card in characters, so values are
clipped here rather than rejected there. Cards are built in code, not from
templates: their structure is fixed by WeCom.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from alertbridge.commands import Ack as AckCommand
from alertbridge.commands import Silence as SilenceCommand
from alertbridge.commands.parser import button_key
from alertbridge.duration import format_duration
from alertbridge.message import RenderedMessage
from alertbridge.messengers.wecom.config import ButtonConfig
from alertbridge.model import Ack, Alert, AlertGroup
from alertbridge.render.filters import UNKNOWN_TIME, group_title, known_time, localtime, since
from alertbridge.render.sanitize import clean_group, safe_url

# Character limits WeCom documents for button_interaction cards.
TITLE_CHARS = 36
DESC_CHARS = 44
SUB_TITLE_CHARS = 120
KEYNAME_CHARS = 5
VALUE_CHARS = 26
MAX_FACTS = 6
SUMMARY_CHARS = 500
CARD_URL_BYTES = 2048
_TASK_ID = re.compile(r"[^A-Za-z0-9_\-@]")

_WORDS = {
    "zh": {
        "firing": "告警",
        "resolved": "已恢复",
        "alerts": "告警数",
        "severity": "级别",
        "target": "目标",
        "since": "开始",
        "acked": "已确认",
    },
    "en": {
        "firing": "FIRING",
        "resolved": "RESOLVED",
        "alerts": "Alerts",
        "severity": "Level",
        "target": "Target",
        "since": "Since",
        "acked": "Acked",
    },
}


def clip(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"


def button_update_body(users: Sequence[str], response_code: str, label: str) -> dict[str, Any]:
    """The one way alertbridge updates a sent card: its buttons give way to
    ``label`` ("已确认 by zhangsan", "已恢复") for ``users``, with the card's
    one-use ``response_code`` (``message/update_template_card``)."""
    return {"userids": list(users), "response_code": response_code, "button": {"replace_name": label}}


def task_id_for(ref: int, delivery_id: int, part: int = 1) -> str:
    """Unique per message, as WeCom requires, and traceable to the delivery."""
    return _TASK_ID.sub("_", f"ab-{ref}-{delivery_id}-{part}")[:128]


@dataclass(frozen=True, slots=True)
class _Face:
    """What every alert card shows of a group, whatever its card type."""

    title: str
    desc: str
    facts: list[tuple[str, str]]
    summary: str
    content: str  # the plain summary for logs and the console


def _face(
    group: AlertGroup, *, ref: int, ack: Ack | None, language: str, tz: ZoneInfo, now: datetime
) -> _Face:
    words = _WORDS.get(language, _WORDS["en"])
    firing = group.firing
    name = group_title(group)  # never empty, in no particular language
    status = words["firing"] if firing else words["resolved"]
    title = clip(f"【{status}】{name} #{ref}", TITLE_CHARS)
    first = (firing or group.alerts)[0]
    summary = first.annotations.get("summary") or first.annotations.get("description") or ""
    facts: list[tuple[str, str]] = [(words["alerts"], f"{len(firing)}/{len(group.alerts)}")]
    severity = group.common_labels.get("severity") or first.labels.get("severity")
    if severity:
        facts.append((words["severity"], severity))
    targets = [
        a.labels.get("instance") or a.labels.get("pod") or a.labels.get("job", "")
        for a in firing or group.alerts
    ]
    targets = [t for t in targets if t]
    if targets:
        more = f" +{len(targets) - 1}" if len(targets) > 1 else ""
        facts.append((words["target"], targets[0] + more))
    # Go's zero time or year 9999 would overflow the time zone shift (see known_time).
    starts = [a.starts_at for a in (firing or group.alerts) if known_time(a.starts_at)]
    if starts:
        started = min(starts)
        facts.append(
            (words["since"], f"{localtime(started, tz, '%m-%d %H:%M')} ({since(started, now, language)})")
        )
    else:
        facts.append((words["since"], UNKNOWN_TIME))
    if ack is not None:
        facts.append((words["acked"], f"{ack.user} {localtime(ack.at, tz, '%H:%M')}"))
    content = "\n".join([title, *(f"{k}: {v}" for k, v in facts), summary]).strip()
    return _Face(
        title=title,
        desc=clip(f"{group.source} · {now.astimezone(tz):%Y-%m-%d %H:%M}", DESC_CHARS),
        facts=facts,
        summary=summary,
        content=content[:SUMMARY_CHARS],
    )


def _card_body(face: _Face, card_type: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "card_type": card_type,
        "source": {"desc": "alertbridge"},
        "main_title": {"title": face.title, "desc": face.desc},
        "horizontal_content_list": [
            {"keyname": clip(key, KEYNAME_CHARS), "value": clip(value, VALUE_CHARS)}
            for key, value in face.facts[:MAX_FACTS]
        ],
    }
    return card


def _add_sub_title(card: dict[str, Any], face: _Face) -> None:
    if face.summary:
        card["sub_title_text"] = clip(face.summary, SUB_TITLE_CHARS)


def mark_sub_title(card: Mapping[str, Any], mark: str) -> dict[str, Any]:
    """``card`` with ``mark`` (a re-send's "(repeat)") in front of its sub-title,
    the first text under its title; clipped like any sub-title."""
    marked = dict(card)
    marked["sub_title_text"] = clip(mark + str(card.get("sub_title_text", "")), SUB_TITLE_CHARS)
    return marked


def build_alert_card(
    group: AlertGroup,
    *,
    ref: int,
    ack: Ack | None,
    language: str,
    buttons: Sequence[ButtonConfig],
    task_id: str,
    tz: ZoneInfo,
    now: datetime,
) -> RenderedMessage:
    """A ``button_interaction`` card of ``group``: its facts and the receiver's buttons."""
    group = clean_group(group)  # control characters would make WeCom refuse the card (40033)
    face = _face(group, ref=ref, ack=ack, language=language, tz=tz, now=now)
    card = _card_body(face, "button_interaction")
    card["task_id"] = task_id
    card["button_list"] = [
        {
            "text": button.text or _button_text(button, language),
            "style": 1 if button.action == "ack" else 2,
            "key": _key(button, ref),
        }
        for button in buttons
    ]
    _add_sub_title(card, face)  # after the buttons: the JSON of earlier versions, key for key
    jump = jump_url(group.firing or group.alerts)
    if jump:
        # Tapping the card opens what to do first: the runbook, else the graph.
        card["card_action"] = {"type": 1, "url": jump}
    # The summary only shows in logs and the console; the card's own parts are clipped above.
    return RenderedMessage(msgtype="template_card", content=face.content, limit=SUMMARY_CHARS * 4, card=card)


def build_notice_card(
    group: AlertGroup,
    *,
    ref: int,
    ack: Ack | None,
    language: str,
    card_type: str,
    tz: ZoneInfo,
    now: datetime,
) -> RenderedMessage | None:
    """A card without commands: ``text_notice``, or ``news_notice`` with the
    group's panel image on top (a group without one gets a text_notice).

    A card shows the group's facts, not every alert, so one card carries any
    group. WeCom requires a notice card's ``card_action``: None when the group
    has no link (``group_link``), and the group goes as plain markdown instead.
    """
    group = clean_group(group)
    link = group_link(group)
    if not link:
        return None
    face = _face(group, ref=ref, ack=ack, language=language, tz=tz, now=now)
    image = group_image(group) if card_type == "news_notice" else ""
    card = _card_body(face, "news_notice" if image else "text_notice")
    _add_sub_title(card, face)
    if image:
        card["card_image"] = {"url": image, "aspect_ratio": 1.3}
    card["card_action"] = {"type": 1, "url": link}
    return RenderedMessage(msgtype="template_card", content=face.content, limit=SUMMARY_CHARS * 4, card=card)


def group_link(group: AlertGroup) -> str:
    """Where a card or article of ``group`` links: ``jump_url`` of its alerts
    (firing first), else the Alertmanager/Grafana external URL; ``""`` when none."""
    jump = jump_url((*group.firing, *group.resolved))
    if jump:
        return jump
    external = safe_url(group.external_url)
    return external if len(external.encode("utf-8")) <= CARD_URL_BYTES else ""


def group_image(group: AlertGroup) -> str:
    """The group's first alert image (a Grafana panel), firing alerts first; ``""`` when none."""
    for alert in (*group.firing, *group.resolved):
        url = safe_url(alert.image_url)
        if url and len(url.encode("utf-8")) <= CARD_URL_BYTES:
            return url
    return ""


def jump_url(alerts: Sequence[Alert]) -> str:
    """Where tapping a card goes: the first alert's runbook, else its graph, panel or dashboard.

    Only http(s) URLs that fit WeCom's 2048-byte url field; ``""`` when none does.
    """
    for alert in alerts:
        for candidate in (
            alert.annotations.get("runbook_url", ""),
            alert.annotations.get("runbook", ""),
            alert.generator_url,
            alert.panel_url,
            alert.dashboard_url,
        ):
            url = safe_url(candidate)
            if url and len(url.encode("utf-8")) <= CARD_URL_BYTES:
                return url
    return ""


def _button_text(button: ButtonConfig, language: str) -> str:
    if button.action == "ack":
        return "确认" if language == "zh" else "Ack"
    assert button.duration is not None  # the config loader requires it
    hours = button.duration.total_seconds() / 3600
    if hours.is_integer():
        return f"静默{int(hours)}小时" if language == "zh" else f"Silence {int(hours)}h"
    duration = format_duration(button.duration, language).replace(" ", "")
    return f"静默{duration}" if language == "zh" else f"Silence {duration}"


def _key(button: ButtonConfig, ref: int) -> str:
    if button.action == "ack":
        return button_key(AckCommand(ref=ref))
    assert button.duration is not None  # the config loader requires it
    return button_key(SilenceCommand(ref=ref, duration=button.duration, comment=""))
