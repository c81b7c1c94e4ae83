"""Keeps each alert group's reference, ack, cards and ack-silences in step
with the notifications the dispatcher sends.

Before a delivery is rendered, the tracker records it against the group's
reference (``#27``) and says whether it is an unchanged repeat of an
acknowledged group (then nothing is sent). For a resolved group whose
messenger showed something to update (WeCom turns the group's cards into
"已恢复", ``Messenger.on_resolved``), whether that worked decides whether a
resolved message is sent at all; the update is done by the upkeep task and
the delivery waits for its outcome (``alertbridge.delivery.resolution``).
After sending it remembers who got the reference, and lets the messenger
remember what it needs (the cards' one-use ``response_code``,
``Messenger.after_sent``).

The upkeep task does everything that calls out over HTTP: it updates the
cards of resolved groups, and expires the silences an ``ack`` created
("until it resolves") once a resolution is recorded — calls to WeCom and to
Alertmanager (or Grafana) that a send must never wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alertbridge.config import Config, ReceiverConfig
from alertbridge.delivery.resolution import Resolutions
from alertbridge.errors import StoreError
from alertbridge.message import RenderedMessage
from alertbridge.messengers import Messengers, Receipt
from alertbridge.model import Ack, Status
from alertbridge.senders import cluster_of
from alertbridge.silencers import Silencer, SilenceRequest, SilencerError
from alertbridge.stores import Delivery
from alertbridge.stores.state import ResolutionState, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tracked:
    ref: int
    ack: Ack | None
    suppressed: bool  # acknowledged and unchanged: send nothing
    handled_by_cards: bool  # resolved, and every card (message the messenger updated) now says so
    # Resolved, and the upkeep is still updating the cards: look again shortly.
    awaiting_resolution: bool = False


class GroupTracker:
    def __init__(
        self,
        *,
        config: Config,
        state: StateStore,
        silencers: Mapping[str, Silencer],
        messengers: Messengers,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._state = state
        self._silencers = silencers
        self._messengers = messengers
        self._clock = clock
        # Set when a resolution is recorded: the upkeep expires its ack-silences.
        self._resolved = asyncio.Event()
        self._resolutions = Resolutions(config=config, state=state, messengers=messengers, clock=clock)

    @property
    def messengers(self) -> Messengers:
        """The messengers of this tracker's config (a batch works with one config's)."""
        return self._messengers

    async def before_send(self, delivery: Delivery, receiver: ReceiverConfig) -> Tracked:
        """Record ``delivery`` against its group's reference and say what to send.

        A resolved delivery claimed again while its cards are updated was
        recorded the first time; recording it again could undo a newer
        notification of the group recorded meanwhile, so it is only read.
        """
        resolved = delivery.group.status is not Status.FIRING
        known = await self._state.get_resolution(delivery.id) if resolved else None
        ref = await self._state.get_ref(known.ref) if known is not None else None
        suppressed = False
        if ref is None:
            update = await self._state.record_notification(
                delivery.receiver,
                delivery.group,
                delivery.recipients,
                delivery.accepted_at,
                delivery_id=delivery.id,
                cluster=cluster_of(self._config, delivery.group.source, delivery.group.external_url),
            )
            ref, suppressed = update.ref, update.suppressed
        if not resolved:
            return Tracked(ref=ref.ref, ack=ref.ack, suppressed=suppressed, handled_by_cards=False)
        if known is None:  # first recorded now: its ack-silences are to expire
            self._resolved.set()
        state = await self._resolutions.verdict(delivery, receiver, ref.ref, known)
        return Tracked(
            ref=ref.ref,
            ack=ref.ack,
            suppressed=suppressed,
            handled_by_cards=state is ResolutionState.DONE,
            awaiting_resolution=state is ResolutionState.PENDING,
        )

    async def after_send(
        self,
        delivery: Delivery,
        receiver: ReceiverConfig,
        tracked: Tracked,
        sent: Sequence[tuple[RenderedMessage, Receipt]],
    ) -> None:
        users = delivery.recipients.to_user
        if users:
            await self._state.record_sent(tracked.ref, users, self._clock())
        await self._messengers.of(receiver).after_sent(tracked.ref, receiver, users, sent)

    async def expire_resolved_ack_silences(self) -> None:
        """Expire the silences an ``ack`` created for groups that have resolved since.

        Such a silence lasts "until it resolves"; left running it would mute
        the group's next episode. A silence whose expiry fails is tried again
        next round.
        """
        now = self._clock()
        for record in await self._state.active_silences(now):
            if not record.via_ack or record.ref is None:
                continue
            silencer = self._silencers.get(record.silencer)
            if silencer is None:
                continue
            ref = await self._state.get_ref(record.ref)
            if ref is None or ref.firing:
                continue
            try:
                await silencer.expire(record.silence_id)
            except SilencerError as exc:
                log.warning(
                    "ack_silence_expire_failed ref=%d silence=%s error=%s", ref.ref, record.silence_id, exc
                )
                continue
            await self._state.mark_silence_expired(record.silence_id, self._clock())
            log.info("ack_silence_expired ref=%d silence=%s", ref.ref, record.silence_id)

    async def extend_ack_silences(self) -> None:
        """Push out ``ack_silences`` silences of groups still firing before they end."""
        now = self._clock()
        step = self._config.commands.ack_silence_step
        try:
            records = await self._state.active_silences(now)
        except StoreError as exc:
            log.error("ack_silence_scan_failed error=%s", exc)
            return
        for record in records:
            if not record.via_ack or record.ref is None or record.ends_at - now > step / 2:
                continue
            ref = await self._state.get_ref(record.ref)
            silencer = self._silencers.get(record.silencer)
            if ref is None or not ref.firing or silencer is None:
                continue
            try:
                existing = await silencer.get(record.silence_id)
                # A silenced alert that resolves sends no webhook (Alertmanager
                # mutes the resolution too), so ask whether anything still fires.
                still_firing = existing is not None and bool(await silencer.firing_alerts(existing.matchers))
                if existing is not None and not still_firing:
                    await silencer.expire(record.silence_id)
            except SilencerError as exc:
                log.warning("ack_silence_check_failed silence=%s error=%s", record.silence_id, exc)
                continue
            if existing is None or not still_firing:
                await self._state.mark_silence_expired(record.silence_id, now)
                log.info(
                    "ack_silence_expired ref=%d silence=%s reason=nothing_firing", ref.ref, record.silence_id
                )
                continue
            request = SilenceRequest(
                matchers=existing.matchers,
                starts_at=existing.starts_at,
                ends_at=now + step,
                created_by=existing.created_by,
                comment=existing.comment,
            )
            try:
                new_id = await silencer.update(record.silence_id, request)
            except SilencerError as exc:
                log.warning("ack_silence_extend_failed silence=%s error=%s", record.silence_id, exc)
                continue
            await self._state.replace_silence_id(record.silence_id, new_id, request.ends_at)
            log.info(
                "ack_silence_extended ref=%d silence=%s until=%s",
                ref.ref,
                new_id,
                request.ends_at.isoformat(),
            )

    async def run_upkeep(self) -> None:
        """Until cancelled: update the cards of resolved groups
        (``alertbridge.delivery.resolution``), and, beside that so neither
        waits for the other's HTTP calls, expire the ack-silences of resolved
        groups (as soon as a resolution is recorded), extend those of groups
        still firing and forget expired references.

        Runs beside the dispatcher so WeCom and Alertmanager calls never hold up sends.
        """
        await asyncio.gather(self._resolutions.run(), self._silence_upkeep())

    async def _silence_upkeep(self) -> None:
        interval = min(timedelta(minutes=10), self._config.commands.ack_silence_step / 4).total_seconds()
        loop = asyncio.get_running_loop()
        next_round = loop.time()
        while True:
            self._resolved.clear()
            try:
                await self.expire_resolved_ack_silences()
            except StoreError as exc:
                log.error("state_upkeep_failed error=%s", exc)
            if loop.time() >= next_round:
                next_round = loop.time() + interval
                try:
                    await self.extend_ack_silences()
                    pruned = await self._state.prune(self._clock(), self._config.commands.reference_retention)
                except StoreError as exc:
                    log.error("state_upkeep_failed error=%s", exc)
                else:
                    if pruned:
                        log.info("state_pruned rows=%d", pruned)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resolved.wait(), max(0.0, next_round - loop.time()))
