"""The outbox contract, part two: what digests and the send budget rely on —
backlogs, stored digests, recorded sends and reservations of rate-limit slots."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.messengers import RateLimit
from alertbridge.stores import (
    DeliveryStatus,
    DigestClaim,
    DigestClaimStatus,
    DigestPartRecord,
    NewDelivery,
    OutboxStore,
)
from alertbridge.testing.store_contract.helpers import T0, MakeStores, make_delivery, make_group, opened


class OutboxDigestContract:
    """Digests, recorded sends and the send budget (collected through ``OutboxContract``)."""

    async def test_without_a_window_every_delivery_is_stored(self, make_stores: MakeStores) -> None:
        store = make_stores().outbox
        async with opened(store):
            same = NewDelivery(
                receiver="r",
                channel="console",
                recipients=Recipients(),
                group=make_group(),
                request_id="q",
                accepted_at=T0,
                dedup_key="k",
            )
            assert await store.enqueue(same) != await store.enqueue(same)

    async def test_backlog_is_every_pending_row_of_one_receiver_and_recipients(
        self,
        store: OutboxStore,
    ) -> None:
        ids = [await store.enqueue(make_delivery(T0 + timedelta(seconds=i))) for i in range(4)]
        recipients = make_delivery().recipients
        assert await store.count_backlog("ops", recipients) == 4
        # Leased rows still compete for the target's budget: they count.
        [leased] = await store.claim_due(T0, limit=1, lease=timedelta(minutes=1))
        assert leased.id == ids[0]
        assert await store.count_backlog("ops", recipients) == 4
        assert await store.count_backlog("ops", Recipients(to_user=("wangwu",))) == 0
        assert await store.count_backlog("dba", recipients) == 0
        # A digest takes the backlog whether due or not (a deferred row included), oldest first.
        await store.defer([ids[3]], T0 + timedelta(minutes=5))
        claimed = await store.claim_backlog("ops", recipients, T0, limit=10, lease=timedelta(minutes=1))
        assert [d.id for d in claimed] == ids[1:]
        await store.mark_sent(ids[0], T0)
        assert await store.count_backlog("ops", recipients) == 3

    async def test_a_digest_never_takes_a_delivery_a_send_has_started(self, store: OutboxStore) -> None:
        """Merged into a digest, what already reached the member would show a second time."""
        ids = [await store.enqueue(make_delivery(T0 + timedelta(seconds=i))) for i in range(3)]
        recipients = make_delivery().recipients
        await store.record_attempt(["k"], T0, part=0, delivery_id=ids[0])
        await store.record_progress(ids[1], 1)
        claimed = await store.claim_backlog("ops", recipients, T0, limit=10, lease=timedelta(minutes=1))
        assert [d.id for d in claimed] == [ids[2]]
        started = {d.id: d.started for d in await store.list()}
        assert started == {ids[0]: True, ids[1]: True, ids[2]: False}

    async def test_defer_is_not_an_attempt_and_never_brings_a_row_forward(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        await store.claim_due(T0, limit=1, lease=timedelta(minutes=1))
        await store.defer([delivery_id], T0 + timedelta(seconds=40))
        await store.defer([delivery_id], T0 + timedelta(seconds=20))
        [row] = await store.list()
        assert (row.attempts, row.next_attempt_at, row.last_error) == (0, T0 + timedelta(seconds=40), None)
        assert await store.claim_due(T0 + timedelta(seconds=39), limit=1, lease=timedelta(minutes=1)) == []
        assert (
            len(await store.claim_due(T0 + timedelta(seconds=40), limit=1, lease=timedelta(minutes=1))) == 1
        )

    async def test_sends_are_counted_and_forgotten(self, store: OutboxStore) -> None:
        ids = [await store.enqueue(make_delivery()) for _ in range(3)]
        sent_at = T0 + timedelta(seconds=3)
        await store.record_sends(["app:ww:1:user:zhangsan", "app:ww:1:user:lisi"], sent_at)
        for delivery_id in ids[:2]:
            await store.mark_sent(delivery_id, sent_at)
        assert {d.id for d in await store.list(DeliveryStatus.SENT)} == set(ids[:2])
        assert await store.recent_sends(T0) == [
            ("app:ww:1:user:zhangsan", sent_at),
            ("app:ww:1:user:lisi", sent_at),
        ]
        await store.record_attempt(["robot:abc"], sent_at + timedelta(seconds=1), part=0, delivery_id=ids[2])
        assert [key for key, _ in await store.recent_sends(sent_at)] == ["robot:abc"]
        assert await store.forget_sends(sent_at + timedelta(seconds=1)) == 2
        assert [key for key, _ in await store.recent_sends(T0)] == ["robot:abc"]

    async def test_a_stored_digest_resumes_where_it_stopped(self, store: OutboxStore) -> None:
        ids = [await store.enqueue(make_delivery()) for _ in range(3)]
        recipients = make_delivery().recipients
        parts = [
            DigestPartRecord("markdown", "part one", 2048, ((7, (ids[0], ids[1])),)),
            DigestPartRecord("markdown", "part two", 2048, ((8, (ids[2],)),)),
        ]
        digest = await store.create_digest("ops", recipients, parts, T0)
        # Its deliveries are no longer backlog for another digest, but they
        # still compete for the target's budget.
        assert await store.claim_backlog("ops", recipients, T0, limit=10, lease=timedelta(minutes=1)) == []
        assert await store.count_backlog("ops", recipients) == 3
        assert await store.open_digest("ops", recipients) == digest
        assert await store.open_digest("dba", recipients) is None
        claim = await store.claim_digest(digest.id, T0, timedelta(minutes=1))
        assert claim.status is DigestClaimStatus.CLAIMED
        assert [d.id for d in claim.members] == ids and all(d.digest_id == digest.id for d in claim.members)
        await store.record_attempt(["k"], T0, part=0, digest_id=digest.id)
        await store.digest_progress(digest.id, 1, [ids[0], ids[1]], T0)
        resumed = await store.open_digest("ops", recipients)
        assert resumed is not None and resumed.parts_sent == 1 and resumed.parts == tuple(parts)
        claim = await store.claim_digest(digest.id, T0, timedelta(minutes=1))
        assert [d.id for d in claim.members] == [ids[2]]
        await store.digest_progress(digest.id, 2, [ids[2]], T0)
        assert await store.open_digest("ops", recipients) is None
        assert await store.count(DeliveryStatus.SENT) == 3
        assert await store.recent_sends(T0 - timedelta(seconds=1)) == [("k", T0)]
        finished = await store.claim_digest(digest.id, T0, timedelta(minutes=1))
        assert finished == DigestClaim(DigestClaimStatus.FINISHED)

    async def test_a_due_delivery_of_an_open_digest_brings_the_whole_digest(self, store: OutboxStore) -> None:
        ids = [await store.enqueue(make_delivery()) for _ in range(4)]
        lone = await store.enqueue(make_delivery())
        recipients = make_delivery().recipients
        parts = [
            DigestPartRecord("markdown", "part one", 2048, ((7, (ids[0],)),)),
            DigestPartRecord("markdown", "part two", 2048, ((8, (ids[1], ids[2], ids[3])),)),
        ]
        digest = await store.create_digest("ops", recipients, parts, T0)
        await store.digest_progress(digest.id, 1, [ids[0]], T0)
        # Cut off by the budget: its rest waits, due at different times.
        await store.defer([ids[1]], T0 + timedelta(seconds=10))
        await store.defer([ids[2], ids[3]], T0 + timedelta(minutes=5))
        await store.defer([lone], T0 + timedelta(seconds=10))
        claimed = await store.claim_due(T0 + timedelta(seconds=10), limit=1, lease=timedelta(minutes=1))
        # All of it, beyond the limit and due or not: one claimer resumes it.
        assert sorted(d.id for d in claimed) == [ids[1], ids[2], ids[3]]
        later = await store.claim_due(T0 + timedelta(seconds=20), limit=10, lease=timedelta(minutes=1))
        assert [d.id for d in later] == [lone]

    async def test_a_value_that_cannot_be_stored_fails_only_its_own_caller(self, store: OutboxStore) -> None:
        bad = make_delivery(group=make_group(note="lone \ud800 surrogate"), request_id="bad")
        results = await asyncio.gather(
            store.enqueue(make_delivery(request_id="a")),
            store.enqueue(bad),
            store.enqueue(make_delivery(request_id="b")),
            return_exceptions=True,
        )
        assert isinstance(results[1], StoreError) and "cannot be stored" in str(results[1])
        assert isinstance(results[0], int) and isinstance(results[2], int)
        assert sorted(d.request_id for d in await store.list()) == ["a", "b"]

    async def test_an_accepted_part_restarts_the_backoff_streak(self, store: OutboxStore) -> None:
        """``attempts`` counts every send attempt (the one that finished ``ids[1]``
        too); ``failures_since_progress`` only the failures since WeCom last
        accepted a part — of the delivery itself or of its digest."""
        ids = [await store.enqueue(make_delivery()) for _ in range(3)]
        for delivery_id in ids:
            await store.reschedule(delivery_id, T0, "server_busy")
            await store.reschedule(delivery_id, T0, "server_busy")
        await store.record_progress(ids[0], 1)
        digest = await store.create_digest(
            "ops",
            make_delivery().recipients,
            [
                DigestPartRecord("text", "one", 2048, ((7, (ids[1],)),)),
                DigestPartRecord("text", "two", 2048, ((8, (ids[2],)),)),
            ],
            T0,
        )
        await store.digest_progress(digest.id, 1, [ids[1]], T0)
        rows = {d.id: d for d in await store.list()}
        assert [(rows[i].attempts, rows[i].failures_since_progress) for i in ids] == [(2, 0), (3, 0), (2, 0)]
        await store.reschedule(ids[2], T0, "server_busy")
        [row] = [d for d in await store.list() if d.id == ids[2]]
        assert (row.attempts, row.failures_since_progress) == (3, 1)

    async def test_a_recorded_attempt_lasts_until_wecom_answered(self, store: OutboxStore) -> None:
        """What a restart finds after a crash between the send and WeCom's answer."""
        ids = [await store.enqueue(make_delivery()) for _ in range(2)]
        recipients = make_delivery().recipients
        digest = await store.create_digest(
            "ops", recipients, [DigestPartRecord("text", "one", 2048, ((7, (ids[1],)),))], T0
        )
        await store.record_attempt(["k"], T0, part=1, delivery_id=ids[0])
        await store.record_attempt(["k"], T0, part=0, digest_id=digest.id)
        rows = {d.id: d for d in await store.list()}
        assert (rows[ids[0]].sending_part, rows[ids[0]].sending_at) == (1, T0)
        assert (rows[ids[1]].sending_part, rows[ids[1]].sending_at) == (None, None)
        stored = await store.open_digest("ops", recipients)
        assert stored is not None and (stored.sending_part, stored.sending_at) == (0, T0)
        assert await store.recent_sends(T0 - timedelta(seconds=1)) == [("k", T0), ("k", T0)]
        await store.record_progress(ids[0], 2)
        await store.record_attempt([], T0, part=None, digest_id=digest.id)
        assert [(d.sending_part, d.sending_at) for d in await store.list()] == [(None, None)] * 2
        stored = await store.open_digest("ops", recipients)
        assert stored is not None and (stored.sending_part, stored.sending_at) == (None, None)

    async def test_a_reservation_takes_what_every_limit_allows_or_nothing(self, store: OutboxStore) -> None:
        """The slots fit every limit of every key, counted in each limit's window."""
        [delivery_id] = [await store.enqueue(make_delivery())]
        member = (RateLimit("m", timedelta(minutes=1), 3), RateLimit("m", timedelta(hours=1), 5))
        limits = (*member, RateLimit("r", timedelta(minutes=1), 10))
        held = T0 + timedelta(seconds=10)
        first = await store.reserve_sends(limits, T0, 2, held_until=held, part=0, delivery_id=delivery_id)
        assert first is not None and first.slots == 2 and len(first.ids) == 4  # two keys, two slots
        [row] = await store.list()
        assert (row.sending_part, row.sending_at) == (0, T0)
        # Recorded at the latest moment WeCom may count them, until settled.
        assert sorted(await store.recent_sends(T0)) == [("m", held)] * 2 + [("r", held)] * 2
        second = await store.reserve_sends(limits, T0, 5, held_until=held)
        assert second is not None and second.slots == 1  # the minute allows 3
        assert await store.reserve_sends(limits, T0, 1, held_until=held) is None
        assert len(await store.recent_sends(T0)) == 6, "a refused reservation records nothing"
        # A minute after the rows' time the minute window is free; the hour allows 2 more.
        later = held + timedelta(minutes=1)
        third = await store.reserve_sends(limits, later, 5, held_until=later)
        assert third is not None and third.slots == 2
        assert await store.reserve_sends(member, later, 1, held_until=later) is None
        # Another key is not touched by any of it.
        other = await store.reserve_sends((RateLimit("x", timedelta(minutes=1), 1),), T0, 1, held_until=T0)
        assert other is not None and other.slots == 1

    async def test_settled_slots_count_from_the_answer_and_refunded_ones_not_at_all(
        self, store: OutboxStore
    ) -> None:
        limits = (RateLimit("m", timedelta(minutes=1), 2),)
        held = T0 + timedelta(seconds=10)
        sent = await store.reserve_sends(limits, T0, 1, held_until=held)
        failed = await store.reserve_sends(limits, T0, 1, held_until=held)
        assert sent is not None and failed is not None
        assert await store.reserve_sends(limits, T0, 1, held_until=held) is None
        await store.settle_sends(sent, T0 + timedelta(seconds=1))
        await store.refund_sends(failed)
        assert await store.recent_sends(T0 - timedelta(seconds=1)) == [("m", T0 + timedelta(seconds=1))]
        assert await store.recent_sends(T0, ["other"]) == []
        assert await store.recent_sends(T0, ["m", "other"]) == [("m", T0 + timedelta(seconds=1))]
        again = await store.reserve_sends(limits, T0 + timedelta(seconds=2), 2, held_until=held)
        assert again is not None and again.slots == 1
        # The settled send leaves the window a minute after WeCom answered.
        edge = T0 + timedelta(seconds=61)
        assert await store.reserve_sends(limits, edge - timedelta(microseconds=1), 1, held_until=edge) is None
        assert await store.reserve_sends(limits, edge, 1, held_until=edge) is not None

    async def test_an_unlimited_send_only_records_its_part(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        taken = await store.reserve_sends((), T0, 3, held_until=T0, part=2, delivery_id=delivery_id)
        assert taken is not None and (taken.slots, taken.ids) == (3, ())
        [row] = await store.list()
        assert (row.sending_part, row.sending_at) == (2, T0)
        assert await store.recent_sends(T0 - timedelta(seconds=1)) == []

    async def test_two_stores_racing_for_the_last_slot_exactly_one_wins(
        self, store: OutboxStore, make_stores: MakeStores
    ) -> None:
        """Two replicas (two stores, two connections) sending to one member in a storm."""
        async with opened(make_stores().outbox) as other:
            for round_ in range(5):
                # Overlapping keys in both orders: the locks must never deadlock.
                member = RateLimit(f"member-{round_}", timedelta(minutes=1), 5)
                robot = RateLimit(f"robot-{round_}", timedelta(minutes=1), 100)
                filled = await store.reserve_sends((member,), T0, 4, held_until=T0)
                assert filled is not None and filled.slots == 4
                results = await asyncio.gather(
                    *(
                        (store if i % 2 else other).reserve_sends(
                            (member, robot) if i % 3 else (robot, member), T0, 1, held_until=T0
                        )
                        for i in range(12)
                    )
                )
                assert sum(r is not None for r in results) == 1, results
                assert len(await store.recent_sends(T0 - timedelta(seconds=1), [member.key])) == 5
