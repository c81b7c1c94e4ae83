"""Alert cards: WeCom's per-field limits, localized buttons, keys that parse back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from alertbridge.commands import Ack as AckCommand
from alertbridge.commands import Silence
from alertbridge.commands.parser import parse_button_key
from alertbridge.messengers.wecom.card import TITLE_CHARS, VALUE_CHARS, build_alert_card, task_id_for
from alertbridge.messengers.wecom.config import ButtonConfig
from alertbridge.model import Ack, Alert, AlertGroup, Status

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def group(name: str = "HighCPU", instance: str = "web-1:9100") -> AlertGroup:
    alert = Alert(
        status=Status.FIRING,
        labels={"alertname": name, "instance": instance, "severity": "critical"},
        annotations={"summary": "CPU 使用率 97%"},
        starts_at=NOW - timedelta(minutes=90),
        ends_at=None,
        fingerprint="f1",
    )
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key="k",
        alerts=(alert,),
        common_labels={"alertname": name},
    )


BUTTONS = [
    ButtonConfig(action="ack"),
    ButtonConfig(action="silence", duration=timedelta(hours=1)),
    ButtonConfig(action="silence", duration=timedelta(minutes=90)),
    ButtonConfig(action="silence", duration=timedelta(hours=4), text="先静默4小时"),
]


def build(language: str, g: AlertGroup | None = None, ack: Ack | None = None) -> dict[str, object]:
    message = build_alert_card(
        g or group(),
        ref=27,
        ack=ack,
        language=language,
        buttons=BUTTONS,
        task_id=task_id_for(27, 5),
        tz=ZoneInfo("Asia/Shanghai"),
        now=NOW,
    )
    assert message.msgtype == "template_card" and message.card is not None
    return dict(message.card)


def test_buttons_are_localized_and_their_keys_parse_back() -> None:
    zh = build("zh")
    en = build("en")
    assert [b["text"] for b in zh["button_list"]] == ["确认", "静默1小时", "静默1小时30分", "先静默4小时"]  # type: ignore[index]
    assert [b["text"] for b in en["button_list"]] == ["Ack", "Silence 1h", "Silence 1h30m", "先静默4小时"]  # type: ignore[index]
    commands = [parse_button_key(b["key"], max_silence=timedelta(days=7)) for b in zh["button_list"]]  # type: ignore[index]
    assert commands[0] == AckCommand(ref=27)
    assert commands[1] == Silence(ref=27, duration=timedelta(hours=1))
    assert zh["task_id"] == "ab-27-5-1"
    assert "#27" in zh["main_title"]["title"]  # type: ignore[index]


def test_fields_are_clipped_to_wecom_limits_and_ack_is_shown() -> None:
    card = build("zh", group(name="X" * 200, instance="i" * 300), ack=Ack(user="zhangsan", at=NOW))
    assert len(card["main_title"]["title"]) <= TITLE_CHARS  # type: ignore[index]
    facts = card["horizontal_content_list"]
    assert len(facts) <= 6  # type: ignore[arg-type]
    assert all(len(f["value"]) <= VALUE_CHARS for f in facts)  # type: ignore[union-attr]
    assert {"keyname": "已确认", "value": "zhangsan 20:00"} in facts  # type: ignore[operator]
