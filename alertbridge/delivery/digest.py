"""Digests: a target's backlog merged into one message when it does not fit the budget.

When more waits for a target than WeCom lets us send, everything waiting
is merged into a digest (one line per alert, each group once in its latest
state). A digest is rendered once and stored with its deliveries before
its first part is sent, then sent part by part exactly as stored, so a
crash or a full budget on the way resumes it instead of re-rendering a
different one. A part WeCom refuses for its content splits the digest in
halves until the one group that cannot be sent is found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from alertbridge.config import ReceiverConfig
from alertbridge.delivery.compose import resent
from alertbridge.delivery.context import BatchContext
from alertbridge.delivery.outcome import Outcomes, refused_content
from alertbridge.delivery.refusals import describe_group, refused
from alertbridge.delivery.send import Sender, StoredPart
from alertbridge.delivery.tracking import Tracked
from alertbridge.errors import DeliveryError, StoreError, TemplateError, TransientDeliveryError
from alertbridge.message import RenderedMessage
from alertbridge.messengers import Channel, RateLimit
from alertbridge.model import AlertGroup
from alertbridge.render.digest import DigestSection
from alertbridge.render.replies import replies_for
from alertbridge.stores import Delivery, DigestClaimStatus, DigestPartRecord, StoredDigest

log = logging.getLogger(__name__)

# Deliveries merged into one digest at most; the rest go in the next one.
DIGEST_MAX_DELIVERIES = 1000
# How long a delivery waits when another replica holds its target's digests.
TARGET_BUSY_RETRY = timedelta(seconds=2)


class DigestSender:
    """Finishes a target's open digest and merges what waits into new ones."""

    def __init__(
        self,
        context: BatchContext,
        sender: Sender,
        outcomes: Outcomes,
        *,
        lease: timedelta,
        take_from_queue: Callable[[set[int]], None],
    ) -> None:
        self._ctx = context
        self._sender = sender
        self._outcomes = outcomes
        self._lease = lease
        # Deliveries a resumed digest now owns: their queued copies are stale.
        self._take_from_queue = take_from_queue

    async def send_digests(
        self,
        batch: Sequence[tuple[Delivery, Tracked | None]],
        receiver: ReceiverConfig,
        channel: Channel,
        limits: Sequence[RateLimit],
    ) -> None:
        """Finish the target's stored digest, if one is open (a crash or a full
        budget interrupted it), then merge what waits into a new one — for as
        long as the budget allows.

        One replica at a time does this for a target (``lock_target``): two
        merging one member's backlog at once would each send half of it as
        a digest. While another holds it, ``batch`` is left to it (its
        ``claim_backlog`` takes what waits) or to a later round.
        """
        ctx = self._ctx
        anchor = batch[0][0]
        if not await ctx.store.lock_target(anchor.receiver, anchor.recipients, ctx.clock(), self._lease):
            log.info(
                "digest_target_busy receiver=%s deliveries=%s: another replica is sending its digests",
                anchor.receiver,
                ",".join(str(d.id) for d, _ in batch),
            )
            await ctx.store.defer([d.id for d, _ in batch], ctx.clock() + TARGET_BUSY_RETRY)
            return
        try:
            await self._send_digests(batch, receiver, channel, limits)
        finally:
            try:
                await ctx.store.unlock_target(anchor.receiver, anchor.recipients)
            except StoreError as exc:
                # Its lease runs out by itself; meanwhile only this replica merges the target.
                log.error("digest_target_unlock_failed receiver=%s error=%s", anchor.receiver, exc)

    async def _send_digests(
        self,
        batch: Sequence[tuple[Delivery, Tracked | None]],
        receiver: ReceiverConfig,
        channel: Channel,
        limits: Sequence[RateLimit],
    ) -> None:
        ctx = self._ctx
        anchor = batch[0][0]
        waiting = list(batch)
        first = True
        while True:
            now = ctx.clock()
            if ctx.budget.available(limits, now) < 1:
                if waiting:
                    await self._outcomes.defer([d for d, _ in waiting], ctx.budget.next_free(limits, now))
                return
            # Renewed each round: a long run of digests must not outlive the
            # target's lease, or another replica would merge the same backlog.
            if not first and not await ctx.store.lock_target(
                anchor.receiver, anchor.recipients, now, self._lease
            ):
                log.warning("digest_target_lost receiver=%s: another replica took it over", anchor.receiver)
                if waiting:
                    await ctx.store.defer([d.id for d, _ in waiting], now)
                return
            first = False
            stored = await ctx.store.open_digest(anchor.receiver, anchor.recipients)
            if stored is None:
                if not waiting:
                    return
                stored = await self._compose(waiting, receiver, channel, now)
                waiting = []
                if stored is None:
                    return
            claim = await ctx.store.claim_digest(stored.id, now, self._lease)
            if claim.status is DigestClaimStatus.HELD_ELSEWHERE:
                # Another replica claimed it and is about to send it (or is
                # sending it): its parts are not this replica's to send — sent
                # by both, they would reach the member twice.
                log.info(
                    "digest_held_elsewhere receiver=%s digest=%d: another replica is resuming it",
                    anchor.receiver,
                    stored.id,
                )
                if waiting:
                    await ctx.store.defer([d.id for d, _ in waiting], now + TARGET_BUSY_RETRY)
                return
            if claim.status is DigestClaimStatus.FINISHED:
                # Every delivery of it finished (a crash after its last
                # bookkeeping): closed, it no longer holds up the next digest.
                await ctx.store.digest_progress(stored.id, len(stored.parts), [], now)
                continue
            members = claim.members
            self._take_from_queue({d.id for d in members})
            waiting = [(d, t) for d, t in waiting if d.id not in {m.id for m in members}]
            if not await self._send_parts(stored, members, anchor, receiver, channel, limits):
                if waiting:
                    # Released, not failed: they are claimed again and merged next time.
                    await ctx.store.defer([d.id for d, _ in waiting], now)
                return

    async def _compose(
        self,
        waiting: Sequence[tuple[Delivery, Tracked | None]],
        receiver: ReceiverConfig,
        channel: Channel,
        now: datetime,
    ) -> StoredDigest | None:
        """Merge ``waiting`` and the rest of the target's backlog into a digest,
        render it once and store it with its deliveries."""
        ctx = self._ctx
        anchor = waiting[0][0]
        more = await ctx.store.claim_backlog(
            anchor.receiver, anchor.recipients, now, DIGEST_MAX_DELIVERIES - len(waiting), self._lease
        )
        entries = sorted([*waiting, *((d, None) for d in more)], key=lambda e: (e[0].accepted_at, e[0].id))
        digest = _Digest()
        for delivery, known in entries:
            tracked = known if known is not None else await ctx.tracker.before_send(delivery, receiver)
            if tracked.awaiting_resolution:
                # Its cards are being updated: it waits for the outcome (a
                # normal resolved line then goes into a later digest, or
                # nothing), the others of the digest do not.
                await self._outcomes.await_resolution(delivery)
                continue
            if tracked.suppressed or tracked.handled_by_cards:
                await ctx.store.mark_sent(delivery.id, now)
                continue
            digest.add(delivery, tracked)
        if not digest.sections:
            return None
        return await self._store(digest, anchor, receiver, channel, now)

    async def _store(
        self, digest: _Digest, anchor: Delivery, receiver: ReceiverConfig, channel: Channel, now: datetime
    ) -> StoredDigest | None:
        """Render ``digest`` once and store it with its deliveries; None when
        its template fails (its deliveries are dead letters then)."""
        ctx = self._ctx
        msgtype = receiver.digest_msgtype
        try:
            parts = ctx.renderer.render_digest(
                digest.sections,
                language=ctx.config.language_of(anchor.receiver),
                msgtype=msgtype,
                channel=channel.kind,
                now=now,
                mentions=ctx.messengers.of(receiver).content_mentions(
                    anchor.recipients, channel.kind, msgtype
                ),
                replies=replies_for(ctx.config, anchor.receiver),
            )
        except TemplateError as exc:
            for delivery in digest.deliveries():
                await self._outcomes.dead(delivery, str(exc))
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
        return await ctx.store.create_digest(anchor.receiver, anchor.recipients, records, now)

    async def _split(
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
        ctx = self._ctx
        now = ctx.clock()
        left = [
            (ref, [by_id[i] for i in ids if i in by_id])
            for p in stored.parts[index:]
            for ref, ids in p.finished
        ]
        left = [(ref, members) for ref, members in left if members]
        await ctx.store.digest_progress(stored.id, len(stored.parts), [], now)
        if len(left) == 1:
            ref, members = left[0]
            why = refused(f"the digest lines of group {describe_group(members[-1].group, ref)}", refusal)
            for delivery in members:
                await self._outcomes.dead(delivery, why)
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
                    digest.add(delivery, _untracked(ref))
            await self._store(digest, anchor, receiver, channel, now)

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
        ctx = self._ctx
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
            if index == stored.sending_part:
                message = resent(
                    ctx.config,
                    ctx.messengers.of(receiver),
                    message,
                    channel,
                    anchor.receiver,
                    f"digest={stored.id}",
                    since=stored.sending_at,
                    now=ctx.clock(),
                )
            try:
                sent = await self._sender.attempt(
                    channel,
                    message,
                    anchor.receiver,
                    anchor.recipients,
                    limits,
                    StoredPart(index, digest_id=stored.id),
                )
            except DeliveryError as exc:
                if refused_content(exc):
                    await self._split(stored, index, by_id, anchor, receiver, channel, exc)
                    return True
                await self._outcomes.failed(unsent(index), exc, progressed=index > stored.parts_sent)
                if not isinstance(exc, TransientDeliveryError):
                    # Its deliveries are dead letters now: close the digest.
                    await ctx.store.digest_progress(stored.id, len(stored.parts), [], ctx.clock())
                return False
            if sent is None:
                await self._outcomes.defer_until_free(unsent(index), limits)
                return False
            ctx.metrics.digests.labels(anchor.receiver).inc()
            finished = [i for _, ids in part.finished for i in ids]
            await ctx.store.digest_progress(stored.id, index + 1, finished, sent.at)
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
                        self._outcomes.observe_latency(channel, by_id[delivery_id], sent.at)
                # Who received the reference, for `ack` without a number.
                await ctx.tracker.after_send(anchor, receiver, _untracked(ref), [])
        return True


def _untracked(ref: int) -> Tracked:
    """A group of a stored digest: only its reference is known."""
    return Tracked(ref=ref, ack=None, suppressed=False, handled_by_cards=False)


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
