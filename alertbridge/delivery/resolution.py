"""Resolution work: what a messenger updates when a group resolves (WeCom turns
the group's cards into "已恢复 / Resolved", or recalls its messages with
``on_resolve = "recall"``), done by the upkeep task, never before a send.

Whether a resolved message is sent at all depends on that work: a group
whose every card now says "Resolved" gets no message, one whose cards could
not all be updated gets a normal resolved message. The work is calls to the
messenger's servers (one per card), so it is split in three steps, each
leaving its trace in the state store:

1. The send path (``Resolutions.verdict``) asks the messenger whether it has
   anything to update (``Messenger.has_resolution_work``, a store read). If
   so it records the work as pending and the delivery is put back for a
   moment (``RECHECK``), neither failed nor counted as an attempt.
2. The upkeep (``Resolutions.run``) claims pending work, runs
   ``Messenger.on_resolved`` and records the outcome, DONE or FAILED.
3. The delivery, claimed again, reads the outcome: DONE, nothing to send;
   FAILED, a normal resolved message.

A crash between any two steps finds the work where it was left. If no
outcome comes within ``PATIENCE`` (the upkeep keeps failing), the delivery
decides FAILED itself and sends its message: a resolution shown twice is
better than one never shown. So is the one case left open: a card WeCom
updated just before a crash, before the outcome was recorded, gets a
resolved message too (its response code was spent, so the upkeep's retry
fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from alertbridge.config import Config, ReceiverConfig
from alertbridge.errors import StoreError
from alertbridge.messengers import Messengers
from alertbridge.stores import Delivery
from alertbridge.stores.state import Resolution, ResolutionState, StateStore

log = logging.getLogger(__name__)

# How long a resolved delivery waits for the upkeep's outcome before it sends
# a normal resolved message anyway.
PATIENCE: Final = timedelta(minutes=2)
# How soon a waiting delivery looks again for the outcome.
RECHECK: Final = timedelta(seconds=1)
# How long a claim keeps other upkeeps (replicas, a reloaded one) off the work.
HOLD: Final = timedelta(seconds=30)
# Work claimed per round, and worked at once: one slow WeCom answer must not
# hold up every other group's cards.
BATCH: Final = 50
PARALLEL: Final = 8
# Seconds between rounds when work was left to retry, and when all is quiet
# (work another replica's crash left behind is found by this poll).
RETRY_SECONDS: Final = 5.0
POLL_SECONDS: Final = 30.0


class Resolutions:
    """Records, works and decides the resolution work of resolved deliveries."""

    def __init__(
        self,
        *,
        config: Config,
        state: StateStore,
        messengers: Messengers,
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._state = state
        self._messengers = messengers
        self._clock = clock
        # Set when work is recorded: the upkeep does it at once.
        self._requested = asyncio.Event()

    async def verdict(
        self, delivery: Delivery, receiver: ReceiverConfig, ref: int, known: Resolution | None
    ) -> ResolutionState | None:
        """Where the resolution work of resolved ``delivery`` (group ``ref``)
        stands, recording it first if the messenger has some; None: there is
        none, send the resolved message. ``known``: what the store held for it.
        """
        now = self._clock()
        resolution = known
        if resolution is None:
            if not await self._messengers.of(receiver).has_resolution_work(ref, receiver):
                return None
            resolution = await self._state.request_resolution(delivery.id, ref, delivery.receiver, now)
            self._requested.set()
            log.info(
                "resolution_requested delivery=%d receiver=%s ref=%d", delivery.id, delivery.receiver, ref
            )
        if resolution.state is ResolutionState.PENDING and now - resolution.requested_at >= PATIENCE:
            decided = await self._state.decide_resolution(delivery.id, ResolutionState.FAILED, now)
            resolution = decided if decided is not None else resolution
            log.warning(
                "resolution_overdue delivery=%d receiver=%s ref=%d outcome=%s",
                delivery.id,
                delivery.receiver,
                ref,
                resolution.state,
            )
        return resolution.state

    async def run(self) -> None:
        """Until cancelled: do pending work as soon as it is recorded, and poll
        for work left behind (a crash, another replica's)."""
        while True:
            self._requested.clear()
            try:
                left = await self.work()
            except StoreError as exc:
                log.error("resolution_upkeep_failed error=%s", exc)
                left = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requested.wait(), RETRY_SECONDS if left else POLL_SECONDS)

    async def work(self) -> bool:
        """Do the work pending now; True when some is left to try again soon."""
        claimed = await self._state.claim_resolutions(self._clock(), HOLD, BATCH)
        if not claimed:
            return False
        slots = asyncio.Semaphore(PARALLEL)
        decided = await asyncio.gather(*(self._work_one(resolution, slots) for resolution in claimed))
        return len(claimed) == BATCH or not all(decided)

    async def _work_one(self, resolution: Resolution, slots: asyncio.Semaphore) -> bool:
        """Run the messenger's ``on_resolved`` and record the outcome; False
        when the store failed (the work is tried again once its hold ends)."""
        async with slots:
            state = await self._outcome(resolution)
            if state is None:
                return False
            try:
                await self._state.decide_resolution(resolution.delivery_id, state, self._clock())
            except StoreError as exc:
                log.error("resolution_record_failed delivery=%d error=%s", resolution.delivery_id, exc)
                return False
            log.info(
                "resolution_decided delivery=%d receiver=%s ref=%d outcome=%s",
                resolution.delivery_id,
                resolution.receiver,
                resolution.ref,
                state,
            )
            return True

    async def _outcome(self, resolution: Resolution) -> ResolutionState | None:
        if self._clock() - resolution.requested_at >= PATIENCE:
            # Its delivery no longer waits: it sends (or sent) a resolved message.
            return ResolutionState.FAILED
        receiver = self._config.receivers.get(resolution.receiver)
        if receiver is None:
            return ResolutionState.FAILED  # its delivery becomes a dead letter
        try:
            done = await self._messengers.of(receiver).on_resolved(
                resolution.ref, resolution.receiver, receiver
            )
        except StoreError as exc:
            log.error("resolution_failed delivery=%d error=%s", resolution.delivery_id, exc)
            return None
        except Exception:
            # A bug must not stop the upkeep nor leave the delivery waiting:
            # it sends a normal resolved message instead.
            log.exception("resolution_crashed delivery=%d ref=%d", resolution.delivery_id, resolution.ref)
            return ResolutionState.FAILED
        return ResolutionState.DONE if done else ResolutionState.FAILED
