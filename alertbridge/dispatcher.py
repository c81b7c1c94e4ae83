"""The dispatcher: claims due deliveries from the outbox and sends them.

Runs as one task in the app's lifespan. For each delivery it renders the
group (against the time it was accepted, so a re-render after a crash yields
the same parts), sends the parts not yet sent in order, and records progress
after each so a restart never re-sends an accepted part. All retry policy
lives here: channels only say whether a failure is transient or permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from alertbridge.backoff import retry_delay
from alertbridge.channels import Channel, Receipt
from alertbridge.channels.card import build_alert_card, task_id_for
from alertbridge.config import AppReceiver, Config, ReceiverConfig
from alertbridge.errors import DeliveryError, StoreError, TemplateError, TransientDeliveryError
from alertbridge.mentions import content_mentions
from alertbridge.message import RenderedMessage
from alertbridge.render import Renderer
from alertbridge.stores import Delivery, OutboxStore
from alertbridge.tracking import GroupTracker, Tracked

log = logging.getLogger(__name__)

# A claimed delivery is ours for this long; it must exceed the slowest send
# of all parts, or another claimer could pick it up while we still work on it.
LEASE = timedelta(minutes=10)
# Upper bound on sleeping: also picks up rows changed by `alertbridge outbox retry`.
POLL_INTERVAL = 1.0
PRUNE_INTERVAL = timedelta(hours=1)
# Alert images (Grafana panels) posted after one notification, at most.
MAX_IMAGES = 3


class Dispatcher:
    def __init__(
        self,
        *,
        config: Config,
        store: OutboxStore,
        channels: Mapping[str, Channel],
        renderer: Renderer,
        tracker: GroupTracker,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._tracker = tracker
        self._store = store
        self._channels = channels
        self._renderer = renderer
        self._clock = clock
        self._rand = rand
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._slots = config.delivery.concurrency
        self._next_prune: datetime | None = None

    def wake(self) -> None:
        """Called after an enqueue so new deliveries go out without waiting for a poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until cancelled; in-flight sends are cancelled with it."""
        try:
            while True:
                self._wake.clear()
                await self._prune_if_due()
                claimed = await self._claim()
                for delivery in claimed:
                    task = asyncio.create_task(self._deliver_guarded(delivery))
                    self._inflight[delivery.id] = task
                    task.add_done_callback(functools.partial(self._done, delivery.id))
                if not claimed or len(self._inflight) >= self._slots:
                    await self._sleep()
        finally:
            for task in list(self._inflight.values()):
                task.cancel()
            if self._inflight:
                await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    def _done(self, delivery_id: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(delivery_id, None)
        self._wake.set()

    async def _prune_if_due(self) -> None:
        now = self._clock()
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        try:
            pruned = await self._store.delete_finished(now - self._config.store.retention)
        except StoreError as exc:
            log.error("outbox_prune_failed error=%s", exc)
            return
        if pruned:
            log.info("outbox_pruned deliveries=%d", pruned)

    async def _claim(self) -> list[Delivery]:
        free = self._slots - len(self._inflight)
        if free <= 0:
            return []
        try:
            claimed = await self._store.claim_due(self._clock(), free, LEASE)
        except StoreError as exc:
            log.error("outbox_claim_failed error=%s", exc)
            return []
        return [d for d in claimed if d.id not in self._inflight]

    async def _sleep(self) -> None:
        timeout = POLL_INTERVAL
        try:
            due = await self._store.next_due_at()
        except StoreError:
            due = None
        if due is not None:
            timeout = min(timeout, max(0.0, (due - self._clock()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _deliver_guarded(self, delivery: Delivery) -> None:
        try:
            await self.deliver(delivery)
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            # The send may have happened; the lease expiring brings the
            # delivery back, and WeCom's duplicate check hides a re-send.
            log.error("outbox_update_failed delivery=%d error=%s", delivery.id, exc)
        except Exception as exc:
            # A bug in one delivery must neither kill the dispatcher nor lose
            # the delivery: log it and retry it like a transient failure.
            log.exception("delivery_crashed delivery=%d", delivery.id)
            try:
                await self._retry_or_dead(delivery, f"internal error: {type(exc).__name__}", 0.0)
            except StoreError as store_exc:
                log.error("outbox_update_failed delivery=%d error=%s", delivery.id, store_exc)

    async def deliver(self, delivery: Delivery) -> None:
        receiver = self._config.receivers.get(delivery.receiver)
        channel = self._channels.get(delivery.receiver)
        if receiver is None or channel is None:
            await self._dead(delivery, f"receiver {delivery.receiver!r} is no longer configured")
            return
        tracked = await self._tracker.before_send(delivery, receiver)
        if tracked.suppressed or tracked.handled_by_cards:
            why = "acknowledged and unchanged" if tracked.suppressed else "cards updated to resolved"
            log.info(
                "delivery_skipped delivery=%d receiver=%s ref=%d why=%s",
                delivery.id,
                delivery.receiver,
                tracked.ref,
                why,
            )
            await self._store.mark_sent(delivery.id, self._clock())
            return
        try:
            messages = _with_images(
                self._messages(delivery, receiver, channel.kind, tracked), delivery, receiver
            )
        except TemplateError as exc:
            await self._dead(delivery, str(exc))
            return
        sent: list[tuple[RenderedMessage, Receipt]] = []
        for index in range(delivery.parts_sent, len(messages)):
            try:
                receipt = await channel.send(messages[index], delivery.recipients)
            except DeliveryError as exc:
                if sent:
                    await self._tracker.after_send(delivery, receiver, tracked, sent)
                if isinstance(exc, TransientDeliveryError):
                    await self._retry_or_dead(delivery, f"{exc.reason}: {exc}", exc.min_delay)
                else:
                    await self._dead(delivery, f"{exc.reason}: {exc}")
                return
            sent.append((messages[index], receipt))
            log.info(
                "message_sent delivery=%d receiver=%s ref=%d part=%d/%d msgid=%s",
                delivery.id,
                delivery.receiver,
                tracked.ref,
                index + 1,
                len(messages),
                receipt.msgid or "-",
            )
            await self._store.record_progress(delivery.id, index + 1)
        await self._tracker.after_send(delivery, receiver, tracked, sent)
        await self._store.mark_sent(delivery.id, self._clock())

    def _messages(
        self, delivery: Delivery, receiver: ReceiverConfig, channel_kind: str, tracked: Tracked
    ) -> list[RenderedMessage]:
        language = self._config.language_of(delivery.receiver)
        if (
            isinstance(receiver, AppReceiver)
            and receiver.msgtype == "template_card"
            and delivery.group.firing
        ):
            return [
                build_alert_card(
                    delivery.group,
                    ref=tracked.ref,
                    ack=tracked.ack,
                    language=language,
                    buttons=receiver.buttons,
                    task_id=task_id_for(tracked.ref, delivery.id),
                    tz=self._config.server.tz,
                    now=delivery.accepted_at,
                )
            ]
        # A resolved group whose cards could not be updated gets a normal message.
        msgtype = receiver.rendered_msgtype
        # Robot markdown @mentions live in the content: the renderer adds them
        # to the last part, within the byte limit.
        mentions = content_mentions(delivery.recipients, channel_kind, msgtype)
        return self._renderer.render(
            delivery.group,
            template=receiver.template,
            language=language,
            msgtype=msgtype,
            channel=channel_kind,
            now=delivery.accepted_at,
            ref=tracked.ref,
            ack=tracked.ack,
            mentions=mentions,
        )

    async def _retry_or_dead(self, delivery: Delivery, error: str, min_delay: float) -> None:
        now = self._clock()
        delivery_config = self._config.delivery
        if now - delivery.accepted_at >= delivery_config.max_age:
            await self._dead(delivery, f"gave up after {delivery.attempts + 1} attempts: {error}")
            return
        delay = retry_delay(
            delivery.attempts + 1,
            initial=delivery_config.initial_backoff,
            maximum=delivery_config.max_backoff,
            min_delay=min_delay,
            rand=self._rand,
        )
        log.warning(
            "delivery_retry delivery=%d receiver=%s attempt=%d in=%.1fs error=%s",
            delivery.id,
            delivery.receiver,
            delivery.attempts + 1,
            delay.total_seconds(),
            error,
        )
        await self._store.reschedule(delivery.id, now + delay, error)

    async def _dead(self, delivery: Delivery, reason: str) -> None:
        log.error("delivery_dead delivery=%d receiver=%s reason=%s", delivery.id, delivery.receiver, reason)
        await self._store.mark_dead(delivery.id, reason, self._clock())


def _with_images(
    messages: list[RenderedMessage], delivery: Delivery, receiver: ReceiverConfig
) -> list[RenderedMessage]:
    """The messages, the last one carrying the firing alerts' distinct image URLs
    (at most ``MAX_IMAGES``) when the receiver posts images."""
    if not receiver.images or not messages:
        return messages
    urls: list[str] = []
    for alert in delivery.group.firing:
        if alert.image_url and alert.image_url not in urls:
            urls.append(alert.image_url)
    if not urls:
        return messages
    return [*messages[:-1], dataclasses.replace(messages[-1], images=tuple(urls[:MAX_IMAGES]))]
