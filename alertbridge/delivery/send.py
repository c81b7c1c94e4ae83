"""Sending one notification: compose → budgeted send → progress.

Every message the delivery core sends — a part of a notification, an alert
sent alone, a part of a digest — goes through ``Sender.attempt``: reserve
budget slots in the outbox (shared by every replica), recording the part as
on its way in the same step, send, then refund the slots when WeCom
refused the message, or settle them at its answer (or at a timeout: the
message may have arrived), and count the message. Writing that once keeps
the rate budget, the crash bookkeeping and /metrics the same for every kind
of send.

Progress is recorded after each part, so a restart never re-sends a part
WeCom accepted; a part cut off by a crash may have arrived, which is why its
re-send is either left to WeCom's duplicate check or marked as a repeat
(``compose.resent``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from alertbridge.config import ReceiverConfig
from alertbridge.delivery.budget import SharedBudget
from alertbridge.delivery.compose import compose, resent, with_images
from alertbridge.delivery.context import BatchContext
from alertbridge.delivery.outcome import Outcomes, not_arrived, refused_content
from alertbridge.delivery.refusals import alerts_refused, describe_alert, refused
from alertbridge.delivery.tracking import Tracked
from alertbridge.errors import DeliveryError, TemplateError
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Channel, RateLimit, Receipt
from alertbridge.stores import Delivery

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredPart:
    """Which stored part a send is: the outbox remembers it as on its way
    until WeCom answers, so a crash in between is known after a restart."""

    part: int  # 0-based
    delivery_id: int | None = None
    digest_id: int | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    message: RenderedMessage  # as sent: with the images and files the budget had room for
    receipt: Receipt
    at: datetime  # when WeCom answered


class Sender:
    """Sends single notifications, part by part, within the rate budget."""

    def __init__(self, context: BatchContext, outcomes: Outcomes) -> None:
        self._ctx = context
        self._outcomes = outcomes
        self._budget = SharedBudget(context.budget, context.store)

    async def attempt(
        self,
        channel: Channel,
        message: RenderedMessage,
        receiver: str,
        recipients: Recipients,
        limits: Sequence[RateLimit],
        stored: StoredPart | None,
    ) -> Sent | None:
        """Send one message within the budget; None when the budget has no slot.

        Raises:
            DeliveryError: the send failed; its budget slots are refunded when
                the messenger answered (the message did not arrive), kept when
                it may have arrived.
        """
        budget = self._budget
        at = self._ctx.clock()
        reservation = await budget.reserve(
            limits,
            at,
            len(message.images) + len(message.files),
            send_timeout=self._ctx.config.send_timeout,
            part=None if stored is None else stored.part,
            delivery_id=None if stored is None else stored.delivery_id,
            digest_id=None if stored is None else stored.digest_id,
        )
        if reservation is None:
            return None
        room = reservation.slots - 1
        if room < len(message.images) + len(message.files):
            # Images, then files, are best effort: only as many as the budget had room for.
            images = message.images[:room]
            message = dataclasses.replace(message, images=images, files=message.files[: room - len(images)])
        try:
            receipt = await channel.send(message, recipients)
        except DeliveryError as exc:
            self._outcomes.count_message(channel, receiver, exc)
            if not not_arrived(exc):
                # A timeout or a broken connection: WeCom may have taken it
                # and counts it against the member, so its slots stay spent.
                await budget.settle(limits, reservation, at, self._ctx.clock())
                raise
            await budget.refund(limits, reservation, at)
            if stored is not None:
                await self._ctx.store.record_attempt(
                    [], at, part=None, delivery_id=stored.delivery_id, digest_id=stored.digest_id
                )
            raise
        sent_at = self._ctx.clock()
        await budget.settle(limits, reservation, at, sent_at)
        self._outcomes.count_message(channel, receiver, None)
        return Sent(message, receipt, sent_at)

    async def send_one(
        self,
        delivery: Delivery,
        receiver: ReceiverConfig,
        channel: Channel,
        limits: Sequence[RateLimit],
        *,
        behind: int = 0,
    ) -> Tracked | None:
        """Send a delivery's parts in order. Returns its tracking when its parts
        do not fit the budget, so the caller sends it in a digest instead —
        unless a send has ``started`` it: then it sends what the budget allows
        and waits for room for the rest.

        ``behind`` deliveries to the same target wait after it; taken to need
        as many messages each, they must fit too. Otherwise a burst of large
        groups would spend the minute on the first few, part by part, and the
        rest would wait for the next one, where a digest now shows them all.
        """
        ctx = self._ctx
        tracked = await ctx.tracker.before_send(delivery, receiver)
        if tracked.awaiting_resolution:
            await self._outcomes.await_resolution(delivery)
            return None
        if tracked.suppressed or tracked.handled_by_cards:
            why = "acknowledged and unchanged" if tracked.suppressed else "cards updated to resolved"
            log.info(
                "delivery_skipped delivery=%d receiver=%s ref=%d why=%s",
                delivery.id,
                delivery.receiver,
                tracked.ref,
                why,
            )
            await ctx.store.mark_sent(delivery.id, ctx.clock())
            return None
        try:
            messages = with_images(
                compose(
                    ctx.config,
                    ctx.renderer,
                    ctx.messengers.of(receiver),
                    delivery,
                    receiver,
                    channel.kind,
                    tracked,
                ),
                delivery,
                receiver,
            )
        except TemplateError as exc:
            await self._outcomes.dead(delivery, str(exc))
            return None
        needed = (len(messages) - delivery.parts_sent) * (1 + behind)
        fits = needed <= ctx.budget.available(limits, ctx.clock())
        if limits and not fits and not delivery.started:
            return tracked
        sent: list[tuple[RenderedMessage, Receipt]] = []
        for index in range(delivery.parts_sent, len(messages)):
            message = messages[index]
            if index == delivery.sending_part:
                message = resent(
                    ctx.config,
                    ctx.messengers.of(receiver),
                    message,
                    channel,
                    delivery.receiver,
                    f"delivery={delivery.id}",
                    since=delivery.sending_at,
                    now=ctx.clock(),
                )
            try:
                outcome = await self.attempt(
                    channel,
                    message,
                    delivery.receiver,
                    delivery.recipients,
                    limits,
                    StoredPart(index, delivery_id=delivery.id),
                )
            except DeliveryError as exc:
                if refused_content(exc) and messages[index].card is None:
                    await self._send_alerts_alone(delivery, receiver, channel, limits, tracked, exc, sent)
                    return None
                if sent:
                    await ctx.tracker.after_send(delivery, receiver, tracked, sent)
                await self._outcomes.failed([delivery], exc, progressed=bool(sent))
                return None
            if outcome is None:
                # Another receiver to the same member took the slot meanwhile.
                if sent:
                    await ctx.tracker.after_send(delivery, receiver, tracked, sent)
                await self._outcomes.defer_until_free([delivery], limits)
                return None
            sent.append((outcome.message, outcome.receipt))
            log.info(
                "message_sent delivery=%d request_id=%s receiver=%s ref=%d part=%d/%d msgid=%s",
                delivery.id,
                delivery.request_id,
                delivery.receiver,
                tracked.ref,
                index + 1,
                len(messages),
                outcome.receipt.msgid or "-",
            )
            if index + 1 < len(messages):
                await ctx.store.record_progress(delivery.id, index + 1)
                continue
            # The last part: one transaction finishes the delivery and counts the send.
            await ctx.store.mark_sent(delivery.id, outcome.at)
            self._outcomes.observe_latency(channel, delivery, outcome.at)
        if not sent:  # every part had been sent before (a retry after the last bookkeeping failed)
            await ctx.store.mark_sent(delivery.id, ctx.clock())
        await ctx.tracker.after_send(delivery, receiver, tracked, sent)
        return None

    async def send_oneoff(self, delivery: Delivery, channel: Channel, limits: Sequence[RateLimit]) -> None:
        """Send a one-off message (``Delivery.oneoff``) exactly as stored.

        It has one part and no alerts: no template, no digest, no tracking.
        A send a crash cut off goes again unmarked: WeCom's duplicate check
        hides an app message that did arrive, and a file has nowhere to
        carry a "(repeat)" mark.
        """
        ctx = self._ctx
        assert delivery.oneoff is not None
        try:
            outcome = await self.attempt(
                channel,
                delivery.oneoff.message(),
                delivery.receiver,
                delivery.recipients,
                limits,
                StoredPart(0, delivery_id=delivery.id),
            )
        except DeliveryError as exc:
            await self._outcomes.failed([delivery], exc, progressed=False)
            return
        if outcome is None:
            await self._outcomes.defer_until_free([delivery], limits)
            return
        log.info(
            "message_sent delivery=%d request_id=%s receiver=%s oneoff=%s msgid=%s",
            delivery.id,
            delivery.request_id,
            delivery.receiver,
            delivery.oneoff.msgtype,
            outcome.receipt.msgid or "-",
        )
        await ctx.store.mark_sent(delivery.id, outcome.at)
        self._outcomes.observe_latency(channel, delivery, outcome.at)

    async def _send_alerts_alone(
        self,
        delivery: Delivery,
        receiver: ReceiverConfig,
        channel: Channel,
        limits: Sequence[RateLimit],
        tracked: Tracked,
        refusal: DeliveryError,
        sent: list[tuple[RenderedMessage, Receipt]],
    ) -> None:
        """WeCom refused a part for its content (40033 …): send the group's
        alerts one per message, so only the alerts WeCom refuses are lost.

        The delivery then ends sent, or dead naming each refused alert. A
        transient failure or a full budget on the way leaves it to be retried
        as a whole (app messages sent again within the duplicate-check
        interval are hidden by WeCom). Alerts of parts sent before the refused
        one are shown again: which alerts a part held is the renderer's.
        """
        ctx = self._ctx
        alerts = (*delivery.group.firing, *delivery.group.resolved)
        if len(alerts) <= 1:
            if sent:
                await ctx.tracker.after_send(delivery, receiver, tracked, sent)
            what = f"alert {describe_alert(alerts[0])}" if alerts else f"group #{tracked.ref}"
            await self._outcomes.dead(delivery, refused(what, refusal))
            return
        log.warning(
            "delivery_split_by_alert delivery=%d receiver=%s ref=%d alerts=%d error=%s",
            delivery.id,
            delivery.receiver,
            tracked.ref,
            len(alerts),
            refusal.reason,
        )
        refusals: list[str] = []
        for alert in alerts:
            alone = dataclasses.replace(delivery, group=delivery.group.with_alerts((alert,)))
            try:
                pieces = compose(
                    ctx.config,
                    ctx.renderer,
                    ctx.messengers.of(receiver),
                    alone,
                    receiver,
                    channel.kind,
                    tracked,
                )
            except TemplateError as exc:
                refusals.append(f"alert {describe_alert(alert)}: {exc}")
                continue
            for piece in pieces:
                try:
                    outcome = await self.attempt(
                        channel, piece, delivery.receiver, delivery.recipients, limits, None
                    )
                except DeliveryError as exc:
                    if refused_content(exc):
                        refusals.append(refused(f"alert {describe_alert(alert)}", exc))
                        break
                    await ctx.tracker.after_send(delivery, receiver, tracked, sent)
                    await self._outcomes.failed([delivery], exc, progressed=bool(sent))
                    return
                if outcome is None:
                    await ctx.tracker.after_send(delivery, receiver, tracked, sent)
                    await self._outcomes.defer_until_free([delivery], limits)
                    return
                sent.append((outcome.message, outcome.receipt))
        await ctx.tracker.after_send(delivery, receiver, tracked, sent)
        if refusals:
            await self._outcomes.dead(delivery, alerts_refused(refusals, len(alerts) - len(refusals)))
            return
        sent_at = ctx.clock()
        await ctx.store.mark_sent(delivery.id, sent_at)
        self._outcomes.observe_latency(channel, delivery, sent_at)
