"""What a notification looks like once sent: a group's messages as the receiver gets them.

A messenger may shape a notification itself (WeCom: a firing group to a card
receiver becomes one template card, ``Messenger.compose``); anything else is
rendered by the receiver's template, with the messenger's @mentions in the
content and the firing alerts' images on the last part, then dressed by the
messenger (WeCom: each rendered part a textcard, or a news article) — or, for
a group that cannot be dressed, rendered again as the receiver's plain fallback. Rendering is against the time
the notification was accepted, so a re-render after a crash yields the same
parts and the parts already sent are not sent again.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

from alertbridge.config import Config, ReceiverConfig
from alertbridge.delivery.tracking import Tracked
from alertbridge.message import RenderedMessage
from alertbridge.messengers import Channel, Messenger, Notification
from alertbridge.render import Renderer
from alertbridge.render.replies import replies_for
from alertbridge.render.split import truncate_utf8, utf8_len
from alertbridge.stores import Delivery

log = logging.getLogger(__name__)

# Alert images (Grafana panels) posted after one notification, at most.
MAX_IMAGES = 3
# Marks a message re-sent after a crash cut off its first send.
REPEAT_PREFIX = {"zh": "（重复）", "en": "(repeat) "}
# A re-send counts on WeCom's duplicate check only if it leaves this long
# before the interval ends: room for the request's own way there.
RESEND_MARGIN = timedelta(seconds=5)


def compose(
    config: Config,
    renderer: Renderer,
    messenger: Messenger,
    delivery: Delivery,
    receiver: ReceiverConfig,
    channel_kind: str,
    tracked: Tracked,
) -> list[RenderedMessage]:
    """The messages of ``delivery``'s group, without images.

    Raises:
        TemplateError: the receiver's template failed.
    """
    language = config.language_of(delivery.receiver)
    notification = Notification(
        receiver=delivery.receiver,
        group=delivery.group,
        ref=tracked.ref,
        ack=tracked.ack,
        language=language,
        at=delivery.accepted_at,
        delivery_id=delivery.id,
    )
    shaped = messenger.compose(notification, receiver)
    if shaped is not None:
        return shaped

    def rendered(msgtype: str) -> list[RenderedMessage]:
        # @mentions that live in the content (WeCom robot markdown): the renderer
        # adds them to the last part, within the byte limit.
        mentions = messenger.content_mentions(delivery.recipients, channel_kind, msgtype)
        return renderer.render(
            delivery.group,
            template=receiver.template,
            language=language,
            msgtype=msgtype,
            channel=channel_kind,
            now=delivery.accepted_at,
            ref=tracked.ref,
            ack=tracked.ack,
            mentions=mentions,
            replies=replies_for(config, delivery.receiver),
        )

    dressed = messenger.dress(rendered(receiver.rendered_msgtype), notification, receiver)
    if dressed is not None:
        return dressed
    return rendered(receiver.digest_msgtype)


def with_images(
    messages: list[RenderedMessage], delivery: Delivery, receiver: ReceiverConfig
) -> list[RenderedMessage]:
    """The messages, the last one carrying the firing alerts' distinct image URLs
    (at most ``MAX_IMAGES``) when the receiver posts images, and the receiver's
    ``attachment_urls`` of files."""
    if not messages:
        return messages
    urls: list[str] = []
    for alert in delivery.group.firing if receiver.images else ():
        if alert.image_url and alert.image_url not in urls:
            urls.append(alert.image_url)
    files = receiver.attachment_urls(delivery.group)
    if not urls and not files:
        return messages
    last = dataclasses.replace(messages[-1], images=tuple(urls[:MAX_IMAGES]), files=files)
    return [*messages[:-1], last]


def resent(
    config: Config,
    messenger: Messenger,
    message: RenderedMessage,
    channel: Channel,
    receiver: str,
    what: str,
    *,
    since: datetime | None,
    now: datetime,
) -> RenderedMessage:
    """``message`` as it goes out again after a crash cut off its send at ``since``.

    The first send was recorded and never answered: it may have arrived.
    Inside the channel's duplicate-check interval (WeCom app messages) the
    identical message goes again and WeCom hides it if the first one arrived.
    Past it, or on a channel without one (robots), the user would get a
    silent second copy: a visible "(repeat)" beats that and a dropped part.
    The messenger puts the mark where its message shows it (``Messenger.mark_repeat``).
    """
    window = channel.duplicate_check
    if window is not None and since is not None and now - since < window - RESEND_MARGIN:
        log.info("resend_identical receiver=%s %s part=%d/%d", receiver, what, message.part, message.parts)
        return message
    log.warning("resend_marked_repeat receiver=%s %s part=%d/%d", receiver, what, message.part, message.parts)
    mark = REPEAT_PREFIX.get(config.language_of(receiver), REPEAT_PREFIX["en"])
    room = message.limit - utf8_len(mark)
    marked = dataclasses.replace(message, content=mark + truncate_utf8(message.content, room, "…"))
    return messenger.mark_repeat(marked, mark)
