"""The dispatcher's loop: claims due deliveries from the outbox and hands them to workers.

Runs as one task in the app's lifespan. Deliveries to the same receiver and
recipients — a *target* — share WeCom's rate budget, so they are worked by
one task at a time, in order (``alertbridge.delivery.budget``). While a
target's backlog fits its budget every notification goes out as rendered
(``send``); when it does not, everything waiting for that target is merged
into a digest (``digest``), and when not even one message fits, the backlog
waits for the first free slot. Nothing is sent that WeCom would silently drop.

The loop also keeps the outbox tidy (pruning finished rows and old budget
records) and survives a store outage without losing the deliveries it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from alertbridge.config import Config
from alertbridge.delivery.budget import LONGEST_WINDOW, SendBudget
from alertbridge.delivery.context import BatchContext
from alertbridge.delivery.digest import DigestSender
from alertbridge.delivery.outcome import Outcomes, ids
from alertbridge.delivery.priority import WebhookLoad
from alertbridge.delivery.send import Sender
from alertbridge.delivery.tracking import GroupTracker, Tracked
from alertbridge.errors import StoreError
from alertbridge.messengers import Channel
from alertbridge.metrics import Metrics
from alertbridge.render import Renderer
from alertbridge.stores import Delivery, OutboxStore

log = logging.getLogger(__name__)

# Upper bound on sleeping: also picks up rows changed by `alertbridge outbox retry`.
POLL_INTERVAL = 1.0
PRUNE_INTERVAL = timedelta(hours=1)

# (receiver, recipients): deliveries that share WeCom's rate budget and can
# be merged into one digest.
Target = tuple[str, str]

_T = TypeVar("_T")


def target_of(delivery: Delivery) -> Target:
    return (delivery.receiver, json.dumps(delivery.recipients.to_dict(), sort_keys=True))


class Dispatcher:
    """Claims due work, runs one worker per target and wakes on new deliveries."""

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
        webhooks: WebhookLoad | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        # Webhooks being accepted: the dispatcher gives way to them (see delivery.priority).
        self._webhooks = webhooks if webhooks is not None else WebhookLoad()
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
        # Rows hold the messenger's answer, or for a send it never answered
        # (a crash) the latest time it may have counted it. One more timeout
        # on top errs towards fewer sends after a restart: the store's
        # reservations stay exact, this memory only ever turns away more.
        self._budget.load((key, at + self._config.send_timeout) for key, at in sends)

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
        claimed = await self._store.claim_due(self._clock(), free, self._config.store.lease_for_claims)
        return [d for d in claimed if d.id not in self._held]

    async def _release_stranded(self) -> None:
        """Hand back deliveries whose bookkeeping failed while the store was down.

        Their lease (``[store] lease``) would otherwise hold them after the store
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
        context = BatchContext(
            config=self._config,
            store=self._store,
            budget=self._budget,
            metrics=self._metrics,
            renderer=self._renderer,
            tracker=self._tracker,
            messengers=self._tracker.messengers,
            clock=self._clock,
            rand=self._rand,
        )
        outcomes = Outcomes(context)
        if receiver is None or channel is None:
            why = f"receiver {first.receiver!r} is no longer configured"
            for delivery in batch:
                await self._guarded(outcomes, [delivery], outcomes.dead(delivery, why))
            return
        sender = Sender(context, outcomes)
        target = target_of(first)
        digests = DigestSender(
            context,
            sender,
            outcomes,
            lease=context.config.store.lease_for_claims,
            take_from_queue=lambda taken: self._take_from_queue(target, taken),
        )
        limits = context.messengers.of(receiver).limits_for(receiver, first.recipients)
        # A one-off message goes out as itself, as its budget allows (it waits
        # for a slot rather than join a digest).
        for delivery in [d for d in batch if d.oneoff is not None]:
            await self._guarded(outcomes, [delivery], sender.send_oneoff(delivery, channel, limits))
        # A delivery a send has started finishes as itself, as its budget allows;
        # merged into a digest, what already reached the member would show again.
        started = [d for d in batch if d.oneoff is None and d.started and d.digest_id is None]
        for delivery in started:
            await self._guarded(outcomes, [delivery], sender.send_one(delivery, receiver, channel, limits))
        batch = [d for d in batch if d.oneoff is None and not (d.started and d.digest_id is None)]
        if not batch:
            return
        # A delivery tied to a stored digest finishes with that digest, sent as stored.
        in_digest = any(d.digest_id is not None for d in batch)
        backlog = await self._backlog(batch) if limits else len(batch)
        if in_digest or (limits and backlog > self._budget.available(limits, self._clock())):
            await self._guarded(
                outcomes, batch, digests.send_digests([(d, None) for d in batch], receiver, channel, limits)
            )
            return
        # From the first delivery that does not fit on, the rest go into the
        # digest with it: sent one by one after it, they would overtake it.
        digested: list[tuple[Delivery, Tracked | None]] = []
        loop = asyncio.get_running_loop()
        for index, delivery in enumerate(batch):
            if digested:
                digested.append((delivery, None))
                continue
            behind = max(0, backlog - index - 1)
            began = loop.time()
            tracked = await self._guarded(
                outcomes, [delivery], sender.send_one(delivery, receiver, channel, limits, behind=behind)
            )
            if tracked is not None:
                digested.append((delivery, tracked))
            await self._webhooks.give_way(loop.time() - began)
        if digested:
            await self._guarded(
                outcomes, [d for d, _ in digested], digests.send_digests(digested, receiver, channel, limits)
            )

    async def _backlog(self, batch: Sequence[Delivery]) -> int:
        """How many deliveries wait for this target (each at least one message).

        Every pending delivery to the target counts, ``batch``, what other
        replicas claimed and an open digest's rest included: counting only its
        own share, each of three replicas would find that it fits and send one
        by one, spending the minute meant for the digest.
        """
        first = batch[0]
        try:
            return max(len(batch), await self._store.count_backlog(first.receiver, first.recipients))
        except StoreError as exc:
            # Sending one by one still never takes more than the budget allows.
            log.error("outbox_backlog_unknown receiver=%s error=%s", first.receiver, exc)
            return len(batch)

    async def _guarded(
        self, outcomes: Outcomes, deliveries: Sequence[Delivery], work: Awaitable[_T | None]
    ) -> _T | None:
        """Run ``work``; a store failure or a bug neither kills the dispatcher nor loses the deliveries."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            # The send may have happened. Once the store is back the
            # deliveries are released (see _release_stranded).
            log.error("outbox_update_failed deliveries=%s error=%s", ids(deliveries), exc)
            self._stranded.update(d.id for d in deliveries)
        except Exception as exc:
            # A bug must not lose the deliveries: log it and retry them like
            # a transient failure.
            log.exception("delivery_crashed deliveries=%s", ids(deliveries))
            for delivery in deliveries:
                try:
                    await outcomes.retry_or_dead(
                        delivery,
                        f"internal error: {type(exc).__name__}",
                        0.0,
                        delivery.failures_since_progress,
                    )
                except StoreError as store_exc:
                    log.error("outbox_update_failed delivery=%d error=%s", delivery.id, store_exc)
        return None

    def _take_from_queue(self, target: Target, ids: set[int]) -> None:
        """A digest being resumed now owns these deliveries: drop their queued, stale copies."""
        queued = self._queues.get(target)
        if queued:
            self._queues[target] = [d for d in queued if d.id not in ids]
            self._held.difference_update(d.id for d in queued if d.id in ids)
