"""WeCom as the delivery core sees it: template cards, text cards and news,
robot @mentions, send limits, and what a receiver showed of a group when the
group resolves.

A firing group to an app receiver of button cards becomes one card, any group
to a receiver of notice cards one notice card (``alertbridge.messengers.wecom.card``);
textcard and news receivers get the parts their template renders, dressed as
cards or articles (``alertbridge.messengers.wecom.articles``); everything else
is left to the receiver's template. After a button card is sent its one-use
``response_code`` is stored, so the card can be updated once when the group
resolves (``on_resolve = "update"``). With ``on_resolve = "recall"`` the msgid
of every app message is stored instead, and the resolution recalls the
group's messages WeCom still allows (sent within 24 h) before the resolved
message is sent: the chat shows the current state, not a stale alarm.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from alertbridge.config import Config
from alertbridge.config_base import ReceiverBase
from alertbridge.errors import DeliveryError, TransientDeliveryError
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Messenger, Notification, RateLimit, Receipt
from alertbridge.messengers.wecom.appchat import ChatMembers
from alertbridge.messengers.wecom.articles import dress, mark_card
from alertbridge.messengers.wecom.card import (
    build_alert_card,
    build_notice_card,
    button_update_body,
    task_id_for,
)
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import AppChatReceiver, AppReceiver, CardReceiver
from alertbridge.messengers.wecom.limits import WECOM_BYTE_LIMITS, limits_for
from alertbridge.messengers.wecom.mentions import content_mentions
from alertbridge.stores.state import CardRecord, SentMessage, StateStore

log = logging.getLogger(__name__)

# A card's response_code is valid 24 h (WeCom's docs say 72 h in one place,
# 24 h in another; assume the shorter).
RESPONSE_CODE_VALIDITY = timedelta(hours=24)
# message/recall takes back messages sent within the last 24 h (docs §4.5).
RECALL_WINDOW = timedelta(hours=24)


class WeComMessenger(Messenger):
    """The ``app``, ``appchat`` and ``robot`` receivers of one config.

    Without a client and a state store it only composes (``render`` and
    ``send-test`` previews): it updates and records no cards."""

    kinds = ("app", "appchat", "robot")
    byte_limits = WECOM_BYTE_LIMITS

    def __init__(
        self,
        *,
        config: Config,
        client: WeComClient | None,
        state: StateStore | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._client = client
        self._state = state
        self._clock = clock
        self._chat_members = ChatMembers(client)

    def compose(self, notification: Notification, receiver: ReceiverBase) -> list[RenderedMessage] | None:
        if isinstance(receiver, CardReceiver) and receiver.notice_cards:
            card = build_notice_card(
                notification.group,
                ref=notification.ref,
                ack=notification.ack,
                language=notification.language,
                card_type=receiver.card_type,
                tz=self._config.server.tz,
                now=notification.at,
            )
            return None if card is None else [card]
        if (
            not isinstance(receiver, AppReceiver)
            or not _card_receiver(receiver)
            or not notification.group.firing
        ):
            # A resolved group whose cards could not be updated gets a normal message.
            return None
        return [
            build_alert_card(
                notification.group,
                ref=notification.ref,
                ack=notification.ack,
                language=notification.language,
                buttons=receiver.buttons,
                task_id=task_id_for(notification.ref, notification.delivery_id),
                tz=self._config.server.tz,
                now=notification.at,
            )
        ]

    def dress(
        self, messages: Sequence[RenderedMessage], notification: Notification, receiver: ReceiverBase
    ) -> list[RenderedMessage] | None:
        """textcard and news receivers: each rendered description becomes a
        card or an article (``alertbridge.messengers.wecom.articles``)."""
        if receiver.msgtype not in ("textcard", "news"):
            return list(messages)
        return dress(messages, notification.group, ref=notification.ref, language=notification.language)

    def mark_repeat(self, message: RenderedMessage, mark: str) -> RenderedMessage:
        """Cards, text cards and news show their section, not the content: the mark goes there too."""
        if message.card is None:
            return message
        return dataclasses.replace(message, card=mark_card(message.msgtype, message.card, mark))

    def content_mentions(self, recipients: Recipients, channel_kind: str, msgtype: str) -> list[str]:
        return content_mentions(recipients, channel_kind, msgtype)

    def limits_for(self, receiver: ReceiverBase, recipients: Recipients) -> tuple[RateLimit, ...]:
        members: tuple[str, ...] = ()
        if isinstance(receiver, AppChatReceiver) and receiver.app in self._config.wecom.apps:
            members = self._chat_members.known(self._config.wecom.apps[receiver.app], receiver.chatid)
        return limits_for(self._config.wecom, self._config.receivers.values(), receiver, recipients, members)

    async def has_resolution_work(self, ref: int, receiver: ReceiverBase) -> bool:
        """Group ``ref`` left cards to turn "Resolved" (``on_resolve = "update"``)
        or messages to recall (``"recall"``): one read of the state store."""
        if not isinstance(receiver, AppReceiver) or self._state is None or self._client is None:
            return False  # not an app, or composing only
        if receiver.resolve_mode == "update":
            return bool(await self._state.cards_for_ref(ref))
        if receiver.resolve_mode == "recall":
            return bool(await self._state.sent_messages_for_ref(ref))
        return False

    async def on_resolved(self, ref: int, receiver_name: str, receiver: ReceiverBase) -> bool:
        """Update the cards (``update``) or recall the messages (``recall``) of group ``ref``."""
        if not isinstance(receiver, AppReceiver) or self._state is None or self._client is None:
            return False
        if receiver.resolve_mode == "recall":
            await self._recall(ref, self._state, self._client)
            return False  # the resolved message is sent after the recall
        if receiver.resolve_mode == "update":
            return await self._update_cards(ref, receiver_name, receiver, self._state, self._client)
        return False

    async def _update_cards(
        self, ref: int, receiver_name: str, receiver: AppReceiver, state: StateStore, client: WeComClient
    ) -> bool:
        """Turn every card of group ``ref`` into "已恢复 / Resolved" (each card's
        response code can be used once, within its validity): one
        ``message/update_template_card`` call per card, from the upkeep task."""
        cards = await state.cards_for_ref(ref)
        if not cards:
            return False
        app = self._config.wecom.apps[receiver.app]
        label = "已恢复" if self._config.language_of(receiver_name) == "zh" else "Resolved"
        now = self._clock()
        for card in cards:
            fresh = card.response_code_at is not None and now - card.response_code_at < RESPONSE_CODE_VALIDITY
            code = await state.use_response_code(card.task_id) if fresh else None
            if code is None:
                return False
            try:
                await client.update_template_card(card.app, app, button_update_body(card.users, code, label))
            except DeliveryError as exc:
                log.warning("card_resolve_update_failed ref=%d task_id=%s error=%s", ref, card.task_id, exc)
                return False
        return True

    async def _recall(self, ref: int, state: StateStore, client: WeComClient) -> None:
        """Recall the messages of group ``ref`` (``message/recall``, one call each).

        Each message is taken from the store before its call, so no replica
        and no restart recalls it twice; one taken just before a crash stays
        shown (the resolved message is sent all the same). A message older
        than WeCom's 24 h is dropped unrecalled; one WeCom could not recall
        for now is put back, for the group's next resolution.
        """
        now = self._clock()
        for message in await state.sent_messages_for_ref(ref):
            if not await state.take_sent_message(message.msgid):
                continue  # another upkeep took it
            app = self._config.wecom.apps.get(message.app)
            if app is None or now - message.sent_at >= RECALL_WINDOW:
                log.info("recall_skipped ref=%d msgid=%s sent_at=%s", ref, message.msgid, message.sent_at)
                continue
            try:
                await client.recall_message(message.app, app, message.msgid)
            except TransientDeliveryError as exc:
                await state.save_sent_message(message)
                log.warning("recall_failed ref=%d msgid=%s error=%s", ref, message.msgid, exc)
            except DeliveryError as exc:
                log.warning("recall_refused ref=%d msgid=%s error=%s", ref, message.msgid, exc)
            else:
                log.info("recalled ref=%d msgid=%s", ref, message.msgid)

    async def after_sent(
        self,
        ref: int,
        receiver: ReceiverBase,
        users: Sequence[str],
        sent: Sequence[tuple[RenderedMessage, Receipt]],
    ) -> None:
        """Store each sent card with its response code, and with ``on_resolve =
        "recall"`` each message's msgid, for ``on_resolved``; after a group chat
        message, look up the chat's members when their list is stale (``limits_for``)."""
        if isinstance(receiver, AppChatReceiver) and receiver.app in self._config.wecom.apps:
            await self._chat_members.refresh(
                receiver.app, self._config.wecom.apps[receiver.app], receiver.chatid
            )
        if not isinstance(receiver, AppReceiver) or self._state is None:
            return
        for message, receipt in sent:
            if receiver.resolve_mode == "recall" and receipt.msgid:
                await self._state.save_sent_message(
                    SentMessage(msgid=receipt.msgid, ref=ref, app=receiver.app, sent_at=self._clock())
                )
            if message.card is None or message.card.get("card_type") != "button_interaction":
                continue
            await self._state.save_card(
                CardRecord(
                    task_id=str(message.card["task_id"]),
                    ref=ref,
                    app=receiver.app,
                    users=tuple(users),
                    response_code=receipt.response_code,
                    response_code_at=self._clock() if receipt.response_code else None,
                )
            )


def _card_receiver(receiver: AppReceiver) -> bool:
    """Sends button cards, which turn "Resolved" when their group resolves."""
    return receiver.msgtype == "template_card" and receiver.card_type == "button_interaction"
