"""WeCom as the delivery core sees it: template cards, text cards and news,
robot @mentions, send limits, and cards turned "已恢复 / Resolved" when their
group resolves.

A firing group to an app receiver of button cards becomes one card, any group
to a receiver of notice cards one notice card (``alertbridge.messengers.wecom.card``);
textcard and news receivers get the parts their template renders, dressed as
cards or articles (``alertbridge.messengers.wecom.articles``); everything else
is left to the receiver's template. After a button card is sent its one-use
``response_code`` is stored, so the card can be updated once when the group resolves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from alertbridge.config import Config
from alertbridge.config_base import ReceiverBase
from alertbridge.errors import DeliveryError
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Messenger, Notification, RateLimit, Receipt
from alertbridge.messengers.wecom.articles import dress
from alertbridge.messengers.wecom.card import (
    build_alert_card,
    build_notice_card,
    button_update_body,
    task_id_for,
)
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import AppReceiver, WeComReceiver
from alertbridge.messengers.wecom.limits import WECOM_BYTE_LIMITS, limits_for
from alertbridge.messengers.wecom.mentions import content_mentions
from alertbridge.stores.state import CardRecord, StateStore

log = logging.getLogger(__name__)

# A card's response_code is valid 24 h (WeCom's docs say 72 h in one place,
# 24 h in another; assume the shorter).
RESPONSE_CODE_VALIDITY = timedelta(hours=24)


class WeComMessenger(Messenger):
    """The ``app`` and ``robot`` receivers of one config.

    Without a client and a state store it only composes (``render`` and
    ``send-test`` previews): it updates and records no cards."""

    kinds = ("app", "robot")
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

    def compose(self, notification: Notification, receiver: ReceiverBase) -> list[RenderedMessage] | None:
        if isinstance(receiver, WeComReceiver) and receiver.notice_cards:
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

    def content_mentions(self, recipients: Recipients, channel_kind: str, msgtype: str) -> list[str]:
        return content_mentions(recipients, channel_kind, msgtype)

    def limits_for(self, receiver: ReceiverBase, recipients: Recipients) -> tuple[RateLimit, ...]:
        return limits_for(self._config.wecom, self._config.receivers.values(), receiver, recipients)

    async def has_resolution_work(self, ref: int, receiver: ReceiverBase) -> bool:
        """A card receiver that sent group ``ref`` cards: they are to turn "Resolved"
        (one read of the state store)."""
        if not isinstance(receiver, AppReceiver) or not _card_receiver(receiver):
            return False
        if self._state is None or self._client is None:
            return False  # composing only
        return bool(await self._state.cards_for_ref(ref))

    async def on_resolved(self, ref: int, receiver_name: str, receiver: ReceiverBase) -> bool:
        """Turn every card of group ``ref`` into "已恢复 / Resolved" (each card's
        response code can be used once, within its validity): one
        ``message/update_template_card`` call per card, from the upkeep task."""
        if not isinstance(receiver, AppReceiver) or not _card_receiver(receiver):
            return False
        if self._state is None or self._client is None:
            return False  # composing only
        cards = await self._state.cards_for_ref(ref)
        if not cards:
            return False
        app = self._config.wecom.apps[receiver.app]
        label = "已恢复" if self._config.language_of(receiver_name) == "zh" else "Resolved"
        now = self._clock()
        for card in cards:
            fresh = card.response_code_at is not None and now - card.response_code_at < RESPONSE_CODE_VALIDITY
            code = await self._state.use_response_code(card.task_id) if fresh else None
            if code is None:
                return False
            try:
                await self._client.update_template_card(
                    card.app, app, button_update_body(card.users, code, label)
                )
            except DeliveryError as exc:
                log.warning("card_resolve_update_failed ref=%d task_id=%s error=%s", ref, card.task_id, exc)
                return False
        return True

    async def after_sent(
        self,
        ref: int,
        receiver: ReceiverBase,
        users: Sequence[str],
        sent: Sequence[tuple[RenderedMessage, Receipt]],
    ) -> None:
        """Store each sent card with its response code, for ``on_resolved``."""
        if not isinstance(receiver, AppReceiver) or self._state is None:
            return
        for message, receipt in sent:
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
