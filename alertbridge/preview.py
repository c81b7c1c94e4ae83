"""What a receiver gets for an alert group, before any alert fires: ``render`` and ``send-test``.

Both commands compose through the delivery core (``delivery.compose``), not a
renderer call of their own: a card for a ``template_card`` receiver on a
firing group, robot @mentions, reply hints, the alert images on the last
part. So the parts ``render`` prints, and their byte counts against the
limit, are the parts the dispatcher would send, and ``send-test`` sends those
same parts (marked as a test) through the real channel.

A preview has no stored group, so it shows a reference of its own:
``render`` the first one a store hands out (``#1``), which the real
notification replaces with its group's number (a longer number adds its
digits). ``send-test`` really sends, so its parts carry ``#0``: references
start at 1, so a reply or a card button naming #0 is refused, never applied
to a real alert.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from alertbridge.config import Config
from alertbridge.delivery.compose import compose, with_images
from alertbridge.delivery.tracking import Tracked
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Messengers
from alertbridge.messengers.wecom.card import SUB_TITLE_CHARS, clip
from alertbridge.messengers.wecom.limits import DESCRIPTION_BYTES
from alertbridge.messengers.wecom.robot import build_robot_body
from alertbridge.model import AlertGroup
from alertbridge.render import Renderer
from alertbridge.render.split import truncate_utf8
from alertbridge.sources import alertmanager, grafana
from alertbridge.stores import Delivery, DeliveryStatus

# What ``render`` shows as the group's reference: the first one a store hands out.
PREVIEW_REF = 1
# What ``send-test`` sends as the reference: no real group has it (references
# start at 1), so replies and card buttons on a test message act on nothing.
TEST_REF = 0
# The first line of every send-test message: its sample alerts are not real.
TEST_MARKERS = {
    "zh": "【测试】alertbridge send-test 发送的示例消息，无需处理",
    "en": "[TEST] sample message from alertbridge send-test, no action needed",
}


@dataclass(frozen=True, slots=True)
class Preview:
    """The parts one receiver would be sent for one group, in order.

    ``messages`` is empty when the receiver would get nothing (a resolved
    group to a receiver with ``send_resolved = false``).
    """

    receiver: str
    channel: str  # the receiver's channel kind: "app" | "robot" | "console"
    recipients: Recipients
    ref: int
    messages: tuple[RenderedMessage, ...]


def load_group(path: Path, now: datetime) -> AlertGroup:
    """Either source's webhook payload, picked by its shape as the two endpoints would take it.

    Raises:
        OSError: the file cannot be read.
        PayloadError: it is no valid payload of either source.
    """
    body = path.read_bytes()
    if grafana.looks_like_grafana(body):
        return grafana.parse(body, received_at=now)
    return alertmanager.parse(body)


def preview(
    config: Config,
    renderer: Renderer,
    messengers: Messengers,
    receiver: str,
    group: AlertGroup,
    *,
    now: datetime,
    ref: int,
) -> Preview:
    """The parts ``receiver`` would be sent for ``group`` accepted at ``now``, shown as ``ref``.

    The group is taken as the webhook endpoint takes it (resolved alerts
    dropped for a receiver without ``send_resolved``), as a group nobody has
    acknowledged and with no cards yet, then composed by the delivery core.

    Raises:
        TemplateError: the receiver's template failed.
    """
    settings = config.receivers[receiver]
    if not settings.send_resolved:
        # As the webhook endpoint stores it; with nothing firing it stores nothing.
        if not group.firing:
            return Preview(receiver, settings.channel, Recipients(), ref, ())
        group = group.with_alerts(group.firing)
    recipients = settings.recipients_for(group)
    delivery = Delivery(
        id=0,
        receiver=receiver,
        channel=settings.channel,
        recipients=recipients,
        group=group,
        request_id="preview",
        accepted_at=now,
        status=DeliveryStatus.PENDING,
        attempts=0,
        parts_sent=0,
        next_attempt_at=now,
        last_error=None,
        finished_at=None,
    )
    tracked = Tracked(ref=ref, ack=None, suppressed=False, handled_by_cards=False)
    messenger = messengers.of(settings)
    messages = compose(config, renderer, messenger, delivery, settings, settings.channel, tracked)
    return Preview(
        receiver, settings.channel, recipients, ref, tuple(with_images(messages, delivery, settings))
    )


def write_preview(out: TextIO, shown: Preview) -> None:
    """Each part: a header with its msgtype and UTF-8 bytes against its limit
    (what the sender measures), its content, then what goes with it — the
    card JSON, a robot text's @mention lists, the images posted after it."""
    if not shown.messages:
        out.write(f"(nothing: no alert is firing and {shown.receiver} has send_resolved = false)\n")
    for message in shown.messages:
        out.write(
            f"----- message {message.part}/{message.parts} · {message.msgtype} · "
            f"{message.byte_count}/{message.limit} bytes -----\n{message.content}\n"
        )
        if message.card is not None:
            out.write(f"----- {message.msgtype} -----\n")
            out.write(json.dumps(message.card, ensure_ascii=False, indent=2) + "\n")
        for key, names in _mention_lists(shown, message):
            out.write(f"----- {key}: {', '.join(names)}\n")
        if message.images:
            out.write("----- images posted after this message (best effort) -----\n")
            out.write("".join(f"{url}\n" for url in message.images))


def _mention_lists(shown: Preview, message: RenderedMessage) -> list[tuple[str, Sequence[str]]]:
    """A robot text message's @mentions, which travel beside the content, as the robot body carries them."""
    if shown.channel != "robot":
        return []
    section = build_robot_body(message, shown.recipients)[message.msgtype]
    assert isinstance(section, dict)
    return [(key, section[key]) for key in ("mentioned_list", "mentioned_mobile_list") if key in section]


def marked_as_test(message: RenderedMessage, language: str) -> RenderedMessage:
    """``message`` with a test marker first, so nobody acts on the sample alert.

    A line of its own keeps a markdown heading at the start of its line; the
    result is cut back to the message's limit (the sample group never comes
    close). A template card shows its ``content`` nowhere, so the marker also
    leads the card's sub-title; a text card's and a news message's first
    article's description leads with it too.
    """
    marker = TEST_MARKERS.get(language, TEST_MARKERS["en"])
    content = truncate_utf8(f"{marker}\n{message.content}", message.limit, "…")
    card = message.card
    if card is not None and message.msgtype == "template_card":
        sub_title = f"{marker} {card.get('sub_title_text', '')}"
        card = {**card, "sub_title_text": clip(sub_title, SUB_TITLE_CHARS)}
    elif card is not None and message.msgtype == "textcard":
        card = {**card, "description": content}
    elif card is not None and message.msgtype == "news":
        first, *rest = card["articles"]
        description = truncate_utf8(f"{marker}\n{first['description']}", DESCRIPTION_BYTES, "…")
        card = {**card, "articles": [{**first, "description": description}, *rest]}
    return dataclasses.replace(message, content=content, card=card)
