"""How a delivery ends when it is not simply sent: retried, deferred or dead.

All retry policy lives here: channels only say whether a failure is
transient or permanent, and the senders only say what happened. Each
outcome is logged and counted the same way wherever it is decided, so
/metrics and the logs tell one story.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from alertbridge.delivery.backoff import retry_delay
from alertbridge.delivery.context import BatchContext
from alertbridge.delivery.resolution import RECHECK
from alertbridge.errors import DeliveryError, TransientDeliveryError
from alertbridge.messengers import Channel, RateLimit
from alertbridge.stores import Delivery

log = logging.getLogger(__name__)


class Outcomes:
    """Writes a delivery's outcome to the outbox, the log and the metrics."""

    def __init__(self, context: BatchContext) -> None:
        self._ctx = context

    def count_message(self, channel: Channel, receiver: str, error: DeliveryError | None) -> None:
        """One message (a part, a digest part, an alert sent alone) WeCom answered."""
        if error is None:
            outcome = "sent"
        elif isinstance(error, TransientDeliveryError):
            outcome = "failed_transient"
        else:
            outcome = "failed_permanent"
        self._ctx.metrics.messages.labels(channel.kind, receiver, outcome).inc()

    def observe_latency(self, channel: Channel, delivery: Delivery, sent_at: datetime) -> None:
        """From accepted to WeCom's answer on the delivery's last message."""
        self._ctx.metrics.delivery_latency.labels(channel.kind).observe(
            seconds(sent_at - delivery.accepted_at)
        )

    async def defer(self, deliveries: Sequence[Delivery], until: datetime) -> None:
        """The budget is spent: try again when a slot frees, without counting a failure."""
        self._ctx.metrics.deferrals.labels(deliveries[0].receiver).inc(len(deliveries))
        log.info(
            "delivery_deferred receiver=%s deliveries=%s until=%s why=rate_limit",
            deliveries[0].receiver,
            ids(deliveries),
            until.isoformat(),
        )
        await self._ctx.store.defer([d.id for d in deliveries], until)

    async def await_resolution(self, delivery: Delivery) -> None:
        """The upkeep is updating what the messenger showed for the resolved
        group (cards): look again shortly, without counting an attempt."""
        until = self._ctx.clock() + RECHECK
        log.info(
            "delivery_deferred delivery=%d receiver=%s until=%s why=awaiting_resolution",
            delivery.id,
            delivery.receiver,
            until.isoformat(),
        )
        await self._ctx.store.defer([delivery.id], until)

    async def defer_until_free(self, deliveries: Sequence[Delivery], limits: Sequence[RateLimit]) -> None:
        """``defer`` until the budget has a slot for one more message."""
        await self.defer(deliveries, self._ctx.budget.next_free(limits, self._ctx.clock()))

    async def failed(self, deliveries: Sequence[Delivery], exc: DeliveryError, *, progressed: bool) -> None:
        """Retry or dead-letter ``deliveries``; ``progressed``: WeCom accepted a
        part of theirs in this attempt, so their backoff starts over."""
        for delivery in deliveries:
            if isinstance(exc, TransientDeliveryError):
                streak = 0 if progressed else delivery.failures_since_progress
                await self.retry_or_dead(delivery, f"{exc.reason}: {exc}", exc.min_delay, streak)
            else:
                await self.dead(delivery, f"{exc.reason}: {exc}")

    async def retry_or_dead(self, delivery: Delivery, error: str, min_delay: float, streak: int) -> None:
        """Reschedule after a transient failure, or give up past ``max_age``.

        The delay grows with ``streak``, the failures since WeCom last
        accepted a part of this delivery, not with all its attempts: a group of
        ten parts through a flaky WeCom must not wait minutes between parts
        that WeCom keeps accepting.
        """
        now = self._ctx.clock()
        delivery_config = self._ctx.config.delivery
        if now - delivery.accepted_at >= delivery_config.max_age:
            await self.dead(delivery, f"gave up after {delivery.attempts + 1} attempts: {error}")
            return
        delay = retry_delay(
            streak + 1,
            initial=delivery_config.initial_backoff,
            maximum=delivery_config.max_backoff,
            min_delay=min_delay,
            rand=self._ctx.rand,
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
        await self._ctx.store.reschedule(delivery.id, now + delay, error)

    async def dead(self, delivery: Delivery, reason: str) -> None:
        log.error(
            "delivery_dead delivery=%d request_id=%s receiver=%s reason=%s",
            delivery.id,
            delivery.request_id,
            delivery.receiver,
            reason,
        )
        await self._ctx.store.mark_dead(delivery.id, reason, self._ctx.clock())
        self._ctx.metrics.dead_letters.labels(delivery.receiver).inc()


def not_arrived(error: DeliveryError) -> bool:
    """WeCom (or a proxy) answered, so the message did not arrive; after a
    timeout or a broken connection it may have."""
    return error.reason not in ("timeout", "connection_error")


def refused_content(error: DeliveryError) -> bool:
    """WeCom refused this message for good, for what it says: splitting it may save the rest."""
    return error.message_at_fault and not isinstance(error, TransientDeliveryError)


def seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())


def ids(deliveries: Sequence[Delivery]) -> str:
    return ",".join(str(d.id) for d in deliveries)
