"""Answers that could not go back in the callback's own response.

A command that outlived the passive-reply budget, or a failed card click
(a card click can only be answered passively with a button update), is
answered through ``message/send`` — within the member's WeCom budget, shared
with alerts — or, for a card click that succeeded late, through
``message/update_template_card`` with the click's one-use response code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from alertbridge.config import Config
from alertbridge.delivery import SharedBudget
from alertbridge.errors import DeliveryError, StoreError
from alertbridge.messengers.wecom.card import button_update_body
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.inbound import EventMessage, InboundMessage
from alertbridge.messengers.wecom.limits import member_limits
from alertbridge.messengers.wecom.passive import Answer
from alertbridge.metrics import Metrics
from alertbridge.stores.state import StateStore

log = logging.getLogger(__name__)


class ActiveReplies:
    def __init__(
        self,
        *,
        config: Config,
        state: StateStore,
        client: WeComClient,
        metrics: Metrics,
        budget: SharedBudget,
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._state = state
        self._client = client
        self._metrics = metrics
        # The dispatcher's budget: a reply counts against the member's WeCom
        # limit like an alert, else replies would push alerts over it (and,
        # reserved in the store, against every replica's alerts).
        self._budget = budget
        self._clock = clock

    async def deliver(
        self, app_name: str, app: WeComAppConfig, message: InboundMessage, answer: Answer
    ) -> None:
        """Send ``answer`` to the member who sent ``message``: a card click's
        label as a card update (its text if that fails), else its text."""
        if (
            answer.button_label
            and isinstance(message, EventMessage)
            and message.task_id
            and message.response_code
            and await self._update_card(app_name, app, message, answer.button_label, everyone=True)
        ):
            return
        if answer.text:
            await self.send_text(app_name, app, message.from_user, answer.text)

    async def update_others(
        self, app_name: str, app: WeComAppConfig, event: EventMessage, label: str
    ) -> None:
        """Grey out the other recipients' copies of a clicked card: the passive
        button update reaches only the member who clicked."""
        if event.task_id and event.response_code:
            await self._update_card(app_name, app, event, label, everyone=False)

    async def _update_card(
        self, app_name: str, app: WeComAppConfig, event: EventMessage, label: str, *, everyone: bool
    ) -> bool:
        """Update the card for all its recipients (``everyone``) or all but the
        clicking member; False if WeCom refused (True when nobody else got it)."""
        card = await self._state.get_card(event.task_id)
        users = list(card.users) if card is not None and card.users else [event.from_user]
        if not everyone:
            users = [user for user in users if user != event.from_user]
            if not users:
                return True
        body = button_update_body(users, event.response_code, label)
        try:
            await self._client.update_template_card(app_name, app, body)
        except DeliveryError as exc:
            log.warning("card_update_failed app=%s task_id=%s error=%s", app_name, event.task_id, exc)
            return False
        return True

    async def send_text(self, app_name: str, app: WeComAppConfig, user: str, text: str) -> None:
        """Send a reply within the member's WeCom budget; beyond it WeCom would
        drop the message silently (and the next alert with it), so it is not sent."""
        limits = member_limits(app, user)
        reserved_at = self._clock()
        try:
            reservation = await self._budget.reserve(
                limits, reserved_at, 0, send_timeout=self._config.send_timeout
            )
        except StoreError as exc:
            # Unreserved, a reply could push the member past WeCom's limit.
            self._metrics.command_replies.labels("failed").inc()
            log.error("callback_reply_not_sent app=%s user=%s reason=store error=%s", app_name, user, exc)
            return
        if reservation is None:
            self._metrics.command_replies.labels("rate_limited").inc()
            log.warning(
                "callback_reply_not_sent app=%s user=%s reason=rate_limit next_free=%s: "
                "the member's WeCom budget (%d a minute, %d an hour, shared with alerts) is spent",
                app_name,
                user,
                self._budget.memory.next_free(limits, reserved_at).isoformat(),
                app.rate_limit_per_minute,
                app.rate_limit_per_hour,
            )
            return
        body = {"touser": user, "msgtype": "text", "text": {"content": text}}
        try:
            await self._client.send_app_message(app_name, app, body)
        except DeliveryError as exc:
            self._metrics.command_replies.labels("failed").inc()
            log.error("callback_reply_failed app=%s user=%s error=%s", app_name, user, exc)
            await self._budget.refund(limits, reservation, reserved_at)
            return
        await self._budget.settle(limits, reservation, reserved_at, self._clock())
        self._metrics.command_replies.labels("sent").inc()
