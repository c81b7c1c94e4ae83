"""The dispatcher: claims due deliveries from the outbox and sends them.

Runs as one task in the app's lifespan. For each delivery it renders the
group (against the time it was accepted, so a re-render after a crash yields
the same parts), sends the parts not yet sent in order, and records progress
after each so a restart never re-sends an accepted part. All retry policy
lives here: channels only say whether a failure is transient or permanent.

WeCom's rate limits are kept here too (``alertbridge.budget``). Deliveries
to the same receiver and recipients — a *target* — are worked by one task
at a time, in order. While a target's backlog fits its budget every
notification goes out as rendered; when it does not, everything waiting for
that target is merged into a digest (one line per alert), and when not even
one message fits, the backlog waits for the first free slot. Nothing is
sent that WeCom would silently drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from alertbridge.backoff import retry_delay
from alertbridge.budget import LONGEST_WINDOW, RateLimit, SendBudget, limits_for
from alertbridge.config import Config, ReceiverConfig
from alertbridge.errors import DeliveryError, StoreError, TemplateError, TransientDeliveryError
from alertbridge.message import RenderedMessage
from alertbridge.messengers import Channel, Receipt
from alertbridge.messengers.wecom.card import build_alert_card, task_id_for
from alertbridge.messengers.wecom.config import AppReceiver
from alertbridge.messengers.wecom.mentions import content_mentions
from alertbridge.metrics import Metrics
from alertbridge.model import AlertGroup
from alertbridge.refusals import alerts_refused, describe_alert, describe_group, refused
from alertbridge.render import Renderer
from alertbridge.render.digest import DigestSection
from alertbridge.render.replies import replies_for
from alertbridge.render.split import truncate_utf8, utf8_len
from alertbridge.stores import Delivery, DigestPartRecord, OutboxStore, StoredDigest
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
# Deliveries merged into one digest at most; the rest go in the next one.
DIGEST_MAX_DELIVERIES = 1000
# Marks a robot message re-sent after a crash cut off its first send.
REPEAT_PREFIX = {"zh": "（重复）", "en": "(repeat) "}

# (receiver, recipients): deliveries that share WeCom's rate budget and can
# be merged into one digest.
Target = tuple[str, str]

_T = TypeVar("_T")


def target_of(delivery: Delivery) -> Target:
    return (delivery.receiver, json.dumps(delivery.recipients.to_dict(), sort_keys=True))


class Dispatcher:
    def __init__(
        self,
        *,
        config: Config,
        store: OutboxStore,
        channels: Mapping[str, Channel],
        renderer: Renderer,
        tracker: GroupTracker,
        budget: SendBudget | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._tracker = tracker
        self._store = store
        self._channels = channels
        self._renderer = renderer
        self._budget = budget if budget is not None else SendBudget()
        self._metrics = metrics if metrics is not None else Metrics()
        self._clock = clock
        self._rand = rand
        self._wake = asyncio.Event()
        # Claimed deliveries waiting for their target's worker, and the workers.
        self._queues: dict[Target, list[Delivery]] = {}
        self._workers: dict[Target, asyncio.Task[None]] = {}
        self._held: set[int] = set()
        # Leased deliveries whose outcome could not be written (store down).
        self._stranded: set[int] = set()
        # When the run loop last went round; /readyz checks it is recent.
        self.heartbeat: datetime | None = None
        self._slots = config.delivery.concurrency
        self._next_prune: datetime | None = None

    def reconfigure(
        self,
        *,
        config: Config,
        channels: Mapping[str, Channel],
        renderer: Renderer,
        tracker: GroupTracker,
    ) -> None:
        """Use a reloaded config from the next batch on; batches in flight finish as they began."""
        self._config = config
        self._channels = channels
        self._renderer = renderer
        self._tracker = tracker
        self._slots = config.delivery.concurrency

    def wake(self) -> None:
        """Called after an enqueue so new deliveries go out without waiting for a poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until cancelled; in-flight sends are cancelled with it."""
        await self.restore_budget()
        try:
            while True:
                self._wake.clear()
                self.heartbeat = self._clock()
                await self._prune_if_due()
                await self._release_stranded()
                try:
                    claimed = await self._claim()
                except StoreError as exc:
                    # The store is down: poll it calmly rather than spin on
                    # rows that are overdue but cannot be claimed.
                    log.error("outbox_claim_failed error=%s", exc)
                    await self._wait_for_wake(POLL_INTERVAL)
                    continue
                for delivery in claimed:
                    self._hand_to_worker(delivery)
                if len(self._held) >= self._slots:
                    # Every slot is busy: overdue rows must wait for a worker
                    # to finish (it wakes us), not be polled for in a spin.
                    await self._wait_for_wake(POLL_INTERVAL)
                elif not claimed:
                    await self._sleep()
        finally:
            workers = list(self._workers.values())
            for task in workers:
                task.cancel()
            if workers:
                await asyncio.gather(*workers, return_exceptions=True)

    def _hand_to_worker(self, delivery: Delivery) -> None:
        target = target_of(delivery)
        self._queues.setdefault(target, []).append(delivery)
        self._held.add(delivery.id)
        if target not in self._workers:
            self._workers[target] = asyncio.create_task(self._work(target), name=f"deliver:{target[0]}")

    async def _work(self, target: Target) -> None:
        """Work one target's queue until it is empty: its sends stay in order."""
        try:
            while batch := self._queues.get(target):
                self._queues[target] = []
                try:
                    await self.deliver_batch(batch)
                finally:
                    self._held.difference_update(d.id for d in batch)
        finally:
            self._queues.pop(target, None)
            self._workers.pop(target, None)
            self._wake.set()

    async def restore_budget(self) -> None:
        """Remember the last hour's sends, so a restart does not overrun WeCom's limits."""
        try:
            sends = await self._store.recent_sends(self._clock() - LONGEST_WINDOW)
        except StoreError as exc:
            log.error("rate_budget_load_failed error=%s", exc)
            return
        # Recorded when reserved, before WeCom answered; WeCom counted each
        # at most one timeout later, so count them from then to be safe.
        self._budget.load((key, at + self._config.wecom.timeout) for key, at in sends)

    async def _prune_if_due(self) -> None:
        now = self._clock()
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        self._budget.forget_before(now - LONGEST_WINDOW)
        try:
            pruned = await self._store.delete_finished(now - self._config.store.retention)
            await self._store.forget_sends(now - LONGEST_WINDOW)
        except StoreError as exc:
            log.error("outbox_prune_failed error=%s", exc)
            return
        if pruned:
            log.info("outbox_pruned deliveries=%d", pruned)

    async def _claim(self) -> list[Delivery]:
        free = self._slots - len(self._held)
        if free <= 0:
            return []
        claimed = await self._store.claim_due(self._clock(), free, LEASE)
        return [d for d in claimed if d.id not in self._held]

    async def _release_stranded(self) -> None:
        """Hand back deliveries whose bookkeeping failed while the store was down.

        Their lease would otherwise hold them for ``LEASE`` after the store
        recovers. A send that did reach WeCom is re-sent; WeCom's duplicate
        check hides that for app messages.
        """
        if not self._stranded:
            return
        ids = sorted(self._stranded - self._held)
        try:
            await self._store.defer(ids, self._clock())
        except StoreError:
            return  # still down; try again next round
        self._stranded.difference_update(ids)
        log.info("outbox_leases_released deliveries=%s", ",".join(map(str, ids)))

    async def _sleep(self) -> None:
        timeout = POLL_INTERVAL
        try:
            due = await self._store.next_due_at()
        except StoreError:
            due = None
        if due is not None:
            timeout = min(timeout, max(0.0, (due - self._clock()).total_seconds()))
        await self._wait_for_wake(timeout)

    async def _wait_for_wake(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def deliver(self, delivery: Delivery) -> None:
        """Send one delivery (as ``deliver_batch`` of one)."""
        await self.deliver_batch([delivery])

    async def deliver_batch(self, batch: Sequence[Delivery]) -> None:
        """Send deliveries of one target: one by one while its budget allows, else as a digest."""
        first = batch[0]
        receiver = self._config.receivers.get(first.receiver)
        channel = self._channels.get(first.receiver)
        if receiver is None or channel is None:
            why = f"receiver {first.receiver!r} is no longer configured"
            for delivery in batch:
                await self._guarded([delivery], self._dead(delivery, why))
            return
        limits = limits_for(self._config, receiver, first.recipients)
        # A delivery tied to a stored digest finishes with that digest, sent as stored.
        in_digest = any(d.digest_id is not None for d in batch)
        if in_digest or (limits and await self._over_budget(batch, limits)):
            await self._guarded(
                batch, self._send_digests([(d, None) for d in batch], receiver, channel, limits)
            )
            return
        too_big: list[tuple[Delivery, Tracked]] = []
        for delivery in batch:
            tracked = await self._guarded([delivery], self._send_one(delivery, receiver, channel, limits))
            if tracked is not None:
                too_big.append((delivery, tracked))
        if too_big:
            await self._guarded(
                [d for d, _ in too_big], self._send_digests(too_big, receiver, channel, limits)
            )

    async def _over_budget(self, batch: Sequence[Delivery], limits: Sequence[RateLimit]) -> bool:
        """Would this target's backlog (each delivery at least one message) exceed what may be sent now?"""
        now = self._clock()
        available = self._budget.available(limits, now)
        if len(batch) > available:
            return True
        first = batch[0]
        try:
            waiting = await self._store.count_backlog(first.receiver, first.recipients, now)
        except StoreError as exc:
            # Sending one by one still never takes more than the budget allows.
            log.error("outbox_backlog_unknown receiver=%s error=%s", first.receiver, exc)
            return False
        return len(batch) + waiting > available

    async def _guarded(self, deliveries: Sequence[Delivery], work: Awaitable[_T | None]) -> _T | None:
        """Run ``work``; a store failure or a bug neither kills the dispatcher nor loses the deliveries."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            # The send may have happened. Once the store is back the
            # deliveries are released (see _release_stranded).
            log.error("outbox_update_failed deliveries=%s error=%s", _ids(deliveries), exc)
            self._stranded.update(d.id for d in deliveries)
        except Exception as exc:
            # A bug must not lose the deliveries: log it and retry them like
            # a transient failure.
            log.exception("delivery_crashed deliveries=%s", _ids(deliveries))
            for delivery in deliveries:
                try:
                    await self._retry_or_dead(
                        delivery,
                        f"internal error: {type(exc).__name__}",
                        0.0,
                        delivery.failures_since_progress,
                    )
                except StoreError as store_exc:
                    log.error("outbox_update_failed delivery=%d error=%s", delivery.id, store_exc)
        return None

    async def _send_one(
        self, delivery: Delivery, receiver: ReceiverConfig, channel: Channel, limits: Sequence[RateLimit]
    ) -> Tracked | None:
        """Send a delivery's parts in order. Returns its tracking when its parts
        do not fit the budget, so the caller sends it in a digest instead."""
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
            return None
        try:
            messages = _with_images(
                self._messages(delivery, receiver, channel.kind, tracked), delivery, receiver
            )
        except TemplateError as exc:
            await self._dead(delivery, str(exc))
            return None
        if limits and len(messages) - delivery.parts_sent > self._budget.available(limits, self._clock()):
            return tracked
        sent: list[tuple[RenderedMessage, Receipt]] = []
        for index in range(delivery.parts_sent, len(messages)):
            message = messages[index]
            if index == delivery.sending_part and channel.kind == "robot":
                message = self._as_repeat(message, delivery.receiver, f"delivery={delivery.id}")
            try:
                outcome = await self._attempt(channel, message, delivery, limits, part=index)
            except DeliveryError as exc:
                if _refused_content(exc) and messages[index].card is None:
                    await self._send_alerts_alone(delivery, receiver, channel, limits, tracked, exc, sent)
                    return None
                if sent:
                    await self._tracker.after_send(delivery, receiver, tracked, sent)
                await self._failed([delivery], exc, progressed=bool(sent))
                return None
            if outcome is None:
                # Another receiver to the same member took the slot meanwhile.
                if sent:
                    await self._tracker.after_send(delivery, receiver, tracked, sent)
                await self._defer([delivery], self._budget.next_free(limits, self._clock()))
                return None
            message, receipt, sent_at = outcome
            sent.append((message, receipt))
            log.info(
                "message_sent delivery=%d request_id=%s receiver=%s ref=%d part=%d/%d msgid=%s",
                delivery.id,
                delivery.request_id,
                delivery.receiver,
                tracked.ref,
                index + 1,
                len(messages),
                receipt.msgid or "-",
            )
            if index + 1 < len(messages):
                await self._store.record_progress(delivery.id, index + 1)
                continue
            # The last part: one transaction finishes the delivery and counts the send.
            await self._store.mark_sent(delivery.id, sent_at)
            self._metrics.delivery_latency.labels(channel.kind).observe(
                _seconds(sent_at - delivery.accepted_at)
            )
        if not sent:  # every part had been sent before (a retry after the last bookkeeping failed)
            await self._store.mark_sent(delivery.id, self._clock())
        await self._tracker.after_send(delivery, receiver, tracked, sent)
        return None

    async def _attempt(
        self,
        channel: Channel,
        message: RenderedMessage,
        delivery: Delivery,
        limits: Sequence[RateLimit],
        *,
        part: int | None = None,
    ) -> tuple[RenderedMessage, Receipt, datetime] | None:
        """Send one message of ``delivery`` within the budget: the message as sent
        (with the images the budget had room for), WeCom's receipt and when it
        answered; None when the budget has no slot. ``part`` (0-based) is
        recorded as on its way until WeCom's answer is.

        Raises:
            DeliveryError: the send failed; its budget slots are refunded.
        """
        at = self._clock()
        slots = self._reserve(limits, at, message)
        if slots is None:
            return None
        # Counted before sending: a send cut off by a crash may still have
        # reached WeCom, and a restart must not think its slot was free.
        keys = _budget_keys(limits, slots)
        if part is None:
            await self._store.record_sends(keys, at)
        else:
            await self._store.record_attempt(keys, at, part=part, delivery_id=delivery.id)
        if slots - 1 < len(message.images):
            # Images are best effort: only as many as the budget had room for.
            message = dataclasses.replace(message, images=message.images[: slots - 1])
        try:
            receipt = await channel.send(message, delivery.recipients)
        except DeliveryError as exc:
            self._refund(limits, at, slots)
            self._count_message(channel, delivery.receiver, exc)
            if part is not None and _not_arrived(exc):
                await self._store.record_attempt([], at, part=None, delivery_id=delivery.id)
            raise
        sent_at = self._settle(limits, at, slots)
        self._count_message(channel, delivery.receiver, None)
        return message, receipt, sent_at

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
        alerts = (*delivery.group.firing, *delivery.group.resolved)
        if len(alerts) <= 1:
            if sent:
                await self._tracker.after_send(delivery, receiver, tracked, sent)
            what = f"alert {describe_alert(alerts[0])}" if alerts else f"group #{tracked.ref}"
            await self._dead(delivery, refused(what, refusal))
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
                pieces = self._messages(alone, receiver, channel.kind, tracked)
            except TemplateError as exc:
                refusals.append(f"alert {describe_alert(alert)}: {exc}")
                continue
            for piece in pieces:
                try:
                    outcome = await self._attempt(channel, piece, delivery, limits)
                except DeliveryError as exc:
                    if _refused_content(exc):
                        refusals.append(refused(f"alert {describe_alert(alert)}", exc))
                        break
                    await self._tracker.after_send(delivery, receiver, tracked, sent)
                    await self._failed([delivery], exc, progressed=bool(sent))
                    return
                if outcome is None:
                    await self._tracker.after_send(delivery, receiver, tracked, sent)
                    await self._defer([delivery], self._budget.next_free(limits, self._clock()))
                    return
                sent.append((outcome[0], outcome[1]))
        await self._tracker.after_send(delivery, receiver, tracked, sent)
        if refusals:
            await self._dead(delivery, alerts_refused(refusals, len(alerts) - len(refusals)))
            return
        sent_at = self._clock()
        await self._store.mark_sent(delivery.id, sent_at)
        self._metrics.delivery_latency.labels(channel.kind).observe(_seconds(sent_at - delivery.accepted_at))

    async def _send_digests(
        self,
        batch: Sequence[tuple[Delivery, Tracked | None]],
        receiver: ReceiverConfig,
        channel: Channel,
        limits: Sequence[RateLimit],
    ) -> None:
        """Finish the target's stored digest, if one is open (a crash or a full
        budget interrupted it), then merge what waits into a new one — for as
        long as the budget allows."""
        anchor = batch[0][0]
        target = target_of(anchor)
        waiting = list(batch)
        while True:
            now = self._clock()
            if self._budget.available(limits, now) < 1:
                if waiting:
                    await self._defer([d for d, _ in waiting], self._budget.next_free(limits, now))
                return
            stored = await self._store.open_digest(anchor.receiver, anchor.recipients)
            if stored is None:
                if not waiting:
                    return
                stored = await self._compose_digest(waiting, receiver, channel, now)
                waiting = []
                if stored is None:
                    return
            members = await self._store.claim_digest(stored.id, now, LEASE)
            self._take_from_queue(target, {d.id for d in members})
            waiting = [(d, t) for d, t in waiting if d.id not in {m.id for m in members}]
            if not await self._send_parts(stored, members, anchor, receiver, channel, limits):
                if waiting:
                    # Released, not failed: they are claimed again and merged next time.
                    await self._store.defer([d.id for d, _ in waiting], now)
                return

    async def _compose_digest(
        self,
        waiting: Sequence[tuple[Delivery, Tracked | None]],
        receiver: ReceiverConfig,
        channel: Channel,
        now: datetime,
    ) -> StoredDigest | None:
        """Merge ``waiting`` and the rest of the target's backlog into a digest,
        render it once and store it with its deliveries."""
        anchor = waiting[0][0]
        more = await self._store.claim_backlog(
            anchor.receiver, anchor.recipients, now, DIGEST_MAX_DELIVERIES - len(waiting), LEASE
        )
        entries = sorted([*waiting, *((d, None) for d in more)], key=lambda e: (e[0].accepted_at, e[0].id))
        digest = _Digest()
        for delivery, known in entries:
            tracked = known if known is not None else await self._tracker.before_send(delivery, receiver)
            if tracked.suppressed or tracked.handled_by_cards:
                await self._store.mark_sent(delivery.id, now)
                continue
            digest.add(delivery, tracked)
        if not digest.sections:
            return None
        return await self._store_digest(digest, anchor, receiver, channel, now)

    async def _store_digest(
        self, digest: _Digest, anchor: Delivery, receiver: ReceiverConfig, channel: Channel, now: datetime
    ) -> StoredDigest | None:
        """Render ``digest`` once and store it with its deliveries; None when
        its template fails (its deliveries are dead letters then)."""
        msgtype = receiver.rendered_msgtype
        try:
            parts = self._renderer.render_digest(
                digest.sections,
                language=self._config.language_of(anchor.receiver),
                msgtype=msgtype,
                channel=channel.kind,
                now=now,
                mentions=content_mentions(anchor.recipients, channel.kind, msgtype),
                replies=replies_for(self._config, anchor.receiver),
            )
        except TemplateError as exc:
            for delivery in digest.deliveries():
                await self._dead(delivery, str(exc))
            return None
        records = [
            DigestPartRecord(
                msgtype=part.message.msgtype,
                content=part.message.content,
                limit=part.message.limit,
                finished=tuple((ref, tuple(d.id for d in digest.members(ref))) for ref in part.refs_done),
            )
            for part in parts
        ]
        return await self._store.create_digest(anchor.receiver, anchor.recipients, records, now)

    async def _split_digest(
        self,
        stored: StoredDigest,
        index: int,
        by_id: Mapping[int, Delivery],
        anchor: Delivery,
        receiver: ReceiverConfig,
        channel: Channel,
        refusal: DeliveryError,
    ) -> None:
        """WeCom refused part ``index`` for its content (40033 …): close the
        digest and store what it had left as two digests of half the groups
        each, sent next. Halving again where WeCom refuses again ends at the
        one group that cannot be sent, which alone becomes a dead letter.

        The halves are stored digests like any other, so a crash or a full
        budget on the way loses nothing. Groups get no acknowledgement line
        in the halves (their ``ack`` is not kept with a stored digest).
        """
        now = self._clock()
        left = [
            (ref, [by_id[i] for i in ids if i in by_id])
            for p in stored.parts[index:]
            for ref, ids in p.finished
        ]
        left = [(ref, members) for ref, members in left if members]
        await self._store.digest_progress(stored.id, len(stored.parts), [], now)
        if len(left) == 1:
            ref, members = left[0]
            why = refused(f"the digest lines of group {describe_group(members[-1].group, ref)}", refusal)
            for delivery in members:
                await self._dead(delivery, why)
            return
        log.warning(
            "digest_split receiver=%s digest=%d groups=%d error=%s",
            anchor.receiver,
            stored.id,
            len(left),
            refusal.reason,
        )
        middle = len(left) // 2
        for half in (left[:middle], left[middle:]):
            digest = _Digest()
            for ref, members in half:
                for delivery in sorted(members, key=lambda d: (d.accepted_at, d.id)):
                    digest.add(delivery, Tracked(ref=ref, ack=None, suppressed=False, handled_by_cards=False))
            await self._store_digest(digest, anchor, receiver, channel, now)

    async def _send_parts(
        self,
        stored: StoredDigest,
        members: Sequence[Delivery],
        anchor: Delivery,
        receiver: ReceiverConfig,
        channel: Channel,
        limits: Sequence[RateLimit],
    ) -> bool:
        """Send a stored digest's remaining parts, exactly as stored; True when
        all went out, or the digest was split to isolate a part WeCom refused."""
        by_id = {d.id: d for d in members}

        def unsent(index: int) -> list[Delivery]:
            return [
                by_id[i]
                for part in stored.parts[index:]
                for _, ids in part.finished
                for i in ids
                if i in by_id
            ]

        for index in range(stored.parts_sent, len(stored.parts)):
            part = stored.parts[index]
            message = RenderedMessage(
                msgtype=part.msgtype,
                content=part.content,
                limit=part.limit,
                part=index + 1,
                parts=len(stored.parts),
            )
            if index == stored.sending_part and channel.kind == "robot":
                message = self._as_repeat(message, anchor.receiver, f"digest={stored.id}")
            at = self._clock()
            if self._reserve(limits, at, message) is None:
                await self._defer(unsent(index), self._budget.next_free(limits, at))
                return False
            await self._store.record_attempt(_budget_keys(limits, 1), at, part=index, digest_id=stored.id)
            try:
                await channel.send(message, anchor.recipients)
            except DeliveryError as exc:
                self._refund(limits, at, 1)
                self._count_message(channel, anchor.receiver, exc)
                if _not_arrived(exc):
                    await self._store.record_attempt([], at, part=None, digest_id=stored.id)
                if _refused_content(exc):
                    await self._split_digest(stored, index, by_id, anchor, receiver, channel, exc)
                    return True
                await self._failed(unsent(index), exc, progressed=index > stored.parts_sent)
                if not isinstance(exc, TransientDeliveryError):
                    # Its deliveries are dead letters now: close the digest.
                    await self._store.digest_progress(stored.id, len(stored.parts), [], self._clock())
                return False
            sent_at = self._settle(limits, at, 1)
            self._count_message(channel, anchor.receiver, None)
            self._metrics.digests.labels(anchor.receiver).inc()
            finished = [i for _, ids in part.finished for i in ids]
            await self._store.digest_progress(stored.id, index + 1, finished, sent_at)
            log.info(
                "digest_sent receiver=%s digest=%d part=%d/%d groups=%d deliveries=%s",
                anchor.receiver,
                stored.id,
                index + 1,
                len(stored.parts),
                len(part.finished),
                ",".join(map(str, finished)),
            )
            for ref, ids in part.finished:
                for delivery_id in ids:
                    if delivery_id in by_id:
                        self._metrics.delivery_latency.labels(channel.kind).observe(
                            _seconds(sent_at - by_id[delivery_id].accepted_at)
                        )
                # Who received the reference, for `ack` without a number.
                await self._tracker.after_send(
                    anchor, receiver, Tracked(ref=ref, ack=None, suppressed=False, handled_by_cards=False), []
                )
        return True

    def _as_repeat(self, message: RenderedMessage, receiver: str, what: str) -> RenderedMessage:
        """``message`` marked as a repeat, in the receiver's language.

        Its send was cut off (a crash) after it was recorded and before WeCom's
        answer was: it may have arrived. A robot has no duplicate check, so a
        visible "(repeat)" beats both a silent second copy and a dropped part.
        """
        log.warning("robot_repeat receiver=%s %s part=%d/%d", receiver, what, message.part, message.parts)
        prefix = REPEAT_PREFIX.get(self._config.language_of(receiver), REPEAT_PREFIX["en"])
        room = message.limit - utf8_len(prefix)
        return dataclasses.replace(message, content=prefix + truncate_utf8(message.content, room, "…"))

    def _take_from_queue(self, target: Target, ids: set[int]) -> None:
        """A digest being resumed now owns these deliveries: drop their queued, stale copies."""
        queued = self._queues.get(target)
        if queued:
            self._queues[target] = [d for d in queued if d.id not in ids]
            self._held.difference_update(d.id for d in queued if d.id in ids)

    def _reserve(self, limits: Sequence[RateLimit], at: datetime, message: RenderedMessage) -> int | None:
        """Budget slots for ``message`` (and its images, which WeCom counts
        too, when there is room for them): how many were taken, None if none."""
        if not limits:
            return 1 + len(message.images)
        if not self._budget.reserve(limits, at):
            return None
        slots = 1
        for _ in message.images:
            if not self._budget.reserve(limits, at):
                break
            slots += 1
        return slots

    def _refund(self, limits: Sequence[RateLimit], at: datetime, slots: int) -> None:
        for _ in range(slots):
            self._budget.refund(limits, at)

    def _settle(self, limits: Sequence[RateLimit], at: datetime, slots: int) -> datetime:
        sent_at = self._clock()
        for _ in range(slots):
            self._budget.settle(limits, at, sent_at)
        return sent_at

    def _count_message(self, channel: Channel, receiver: str, error: DeliveryError | None) -> None:
        if error is None:
            outcome = "sent"
        elif isinstance(error, TransientDeliveryError):
            outcome = "failed_transient"
        else:
            outcome = "failed_permanent"
        self._metrics.messages.labels(channel.kind, receiver, outcome).inc()

    async def _defer(self, deliveries: Sequence[Delivery], until: datetime) -> None:
        self._metrics.deferrals.labels(deliveries[0].receiver).inc(len(deliveries))
        log.info(
            "delivery_deferred receiver=%s deliveries=%s until=%s why=rate_limit",
            deliveries[0].receiver,
            _ids(deliveries),
            until.isoformat(),
        )
        await self._store.defer([d.id for d in deliveries], until)

    async def _failed(self, deliveries: Sequence[Delivery], exc: DeliveryError, *, progressed: bool) -> None:
        """Retry or dead-letter ``deliveries``; ``progressed``: WeCom accepted a
        part of theirs in this attempt, so their backoff starts over."""
        for delivery in deliveries:
            if isinstance(exc, TransientDeliveryError):
                streak = 0 if progressed else delivery.failures_since_progress
                await self._retry_or_dead(delivery, f"{exc.reason}: {exc}", exc.min_delay, streak)
            else:
                await self._dead(delivery, f"{exc.reason}: {exc}")

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
            replies=replies_for(self._config, delivery.receiver),
        )

    async def _retry_or_dead(self, delivery: Delivery, error: str, min_delay: float, streak: int) -> None:
        """Reschedule after a transient failure, or give up past ``max_age``.

        The delay grows with ``streak``, the failures since WeCom last
        accepted a part of this delivery, not with all its attempts: a group of
        ten parts through a flaky WeCom must not wait minutes between parts
        that WeCom keeps accepting.
        """
        now = self._clock()
        delivery_config = self._config.delivery
        if now - delivery.accepted_at >= delivery_config.max_age:
            await self._dead(delivery, f"gave up after {delivery.attempts + 1} attempts: {error}")
            return
        delay = retry_delay(
            streak + 1,
            initial=delivery_config.initial_backoff,
            maximum=delivery_config.max_backoff,
            min_delay=min_delay,
            rand=self._rand,
        )
        log.warning(
            "delivery_retry delivery=%d request_id=%s receiver=%s attempt=%d in=%.1fs error=%s",
            delivery.id,
            delivery.request_id,
            delivery.receiver,
            delivery.attempts + 1,
            delay.total_seconds(),
            error,
        )
        await self._store.reschedule(delivery.id, now + delay, error)

    async def _dead(self, delivery: Delivery, reason: str) -> None:
        log.error(
            "delivery_dead delivery=%d request_id=%s receiver=%s reason=%s",
            delivery.id,
            delivery.request_id,
            delivery.receiver,
            reason,
        )
        await self._store.mark_dead(delivery.id, reason, self._clock())
        self._metrics.dead_letters.labels(delivery.receiver).inc()


class _Digest:
    """The groups a digest shows: each reference once, in its latest state,
    with every alert any of its waiting notifications carried."""

    def __init__(self) -> None:
        self._groups: dict[int, AlertGroup] = {}
        self._tracked: dict[int, Tracked] = {}
        self._members: dict[int, list[Delivery]] = {}

    def add(self, delivery: Delivery, tracked: Tracked) -> None:
        ref = tracked.ref
        earlier = self._groups.get(ref)
        group = delivery.group
        if earlier is not None:
            # The newest state of each alert wins; alerts only an earlier
            # notification carried are kept, so none goes unseen.
            newest = {a.fingerprint for a in group.alerts}
            group = group.with_alerts(
                (*group.alerts, *(a for a in earlier.alerts if a.fingerprint not in newest))
            )
        self._groups[ref] = group
        self._tracked[ref] = tracked
        self._members.setdefault(ref, []).append(delivery)

    @property
    def sections(self) -> list[DigestSection]:
        return [
            DigestSection(ref=ref, group=group, ack=self._tracked[ref].ack)
            for ref, group in self._groups.items()
        ]

    def deliveries(self) -> list[Delivery]:
        return [d for members in self._members.values() for d in members]

    def members(self, ref: int) -> list[Delivery]:
        return self._members[ref]


def _not_arrived(error: DeliveryError) -> bool:
    """WeCom (or a proxy) answered, so the message did not arrive; after a
    timeout or a broken connection it may have."""
    return error.reason not in ("timeout", "connection_error")


def _refused_content(error: DeliveryError) -> bool:
    """WeCom refused this message for good, for what it says: splitting it may save the rest."""
    return error.message_at_fault and not isinstance(error, TransientDeliveryError)


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())


def _ids(deliveries: Sequence[Delivery]) -> str:
    return ",".join(str(d.id) for d in deliveries)


def _budget_keys(limits: Sequence[RateLimit], slots: int) -> list[str]:
    """The keys to record a send under, once per slot used."""
    return [key for key in dict.fromkeys(limit.key for limit in limits) for _ in range(slots)]


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
