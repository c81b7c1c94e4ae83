"""The outbox contract, part one: the queue — enqueue, claim, lease, retry, list
and prune — where nothing acknowledged is lost and nothing is claimed twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

import pytest

from alertbridge.errors import StoreError
from alertbridge.stores import DeliveryStatus, OutboxStore
from alertbridge.testing.store_contract.helpers import T0, MakeStores, make_delivery, make_group, opened


class OutboxQueueContract:
    """Enqueue, claim, lease, reschedule, retry, list and prune (collected through ``OutboxContract``)."""

    async def test_enqueue_claim_mark_sent_round_trip(self, store: OutboxStore) -> None:
        new = make_delivery()
        delivery_id = await store.enqueue(new)

        [claimed] = await store.claim_due(T0, limit=10, lease=timedelta(minutes=1))

        assert claimed.id == delivery_id
        assert claimed.group.to_dict() == new.group.to_dict()
        assert claimed.group == new.group
        assert claimed.recipients == new.recipients
        assert (claimed.receiver, claimed.channel, claimed.request_id) == ("ops", "app", "req-1")
        assert claimed.accepted_at == T0 and claimed.accepted_at.tzinfo is not None
        assert claimed.accepted_at.utcoffset() == timedelta(0)
        assert claimed.next_attempt_at == T0
        assert (claimed.status, claimed.attempts, claimed.parts_sent) == (DeliveryStatus.PENDING, 0, 0)
        assert claimed.last_error is None and claimed.finished_at is None

        done_at = T0 + timedelta(seconds=2)
        await store.mark_sent(delivery_id, done_at)

        [sent] = await store.list(DeliveryStatus.SENT)
        assert sent.id == delivery_id and sent.finished_at == done_at
        assert await store.count(DeliveryStatus.SENT) == 1
        assert await store.count(DeliveryStatus.PENDING) == 0
        assert await store.claim_due(T0 + timedelta(hours=1), limit=10, lease=timedelta(minutes=1)) == []
        assert await store.next_due_at() is None

    async def test_non_utc_aware_times_are_stored_as_the_same_instant(self, store: OutboxStore) -> None:
        shanghai = timezone(timedelta(hours=8))
        await store.enqueue(make_delivery(T0.astimezone(shanghai)))
        [claimed] = await store.claim_due(T0, limit=1, lease=timedelta(minutes=1))
        assert claimed.accepted_at == T0
        assert claimed.accepted_at.utcoffset() == timedelta(0)

    async def test_naive_datetime_is_refused(self, store: OutboxStore) -> None:
        with pytest.raises(ValueError, match="naive"):
            await store.enqueue(make_delivery(T0.replace(tzinfo=None)))

    async def test_record_progress_is_kept(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        await store.record_progress(delivery_id, 2)
        [row] = await store.list()
        assert row.parts_sent == 2

    async def test_close_drains_queued_enqueues(self, make_stores: MakeStores) -> None:
        store = make_stores().outbox
        await store.open()
        tasks = [asyncio.create_task(store.enqueue(make_delivery(request_id=f"r{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # let every task queue its row
        await store.close()

        ids = await asyncio.gather(*tasks)
        assert len(set(ids)) == 50

        with pytest.raises(StoreError):
            await store.enqueue(make_delivery())

        async with opened(make_stores().outbox) as reopened:
            assert await reopened.count(DeliveryStatus.PENDING) == 50

    async def test_enqueue_before_open_raises(self, make_stores: MakeStores) -> None:
        with pytest.raises(StoreError):
            await make_stores().outbox.enqueue(make_delivery())

    async def test_pending_rows_survive_close_and_reopen(self, make_stores: MakeStores) -> None:
        async with opened(make_stores().outbox) as first:
            ids = [await first.enqueue(make_delivery(T0 + timedelta(seconds=i))) for i in range(3)]

        async with opened(make_stores().outbox) as second:
            claimed = await second.claim_due(T0 + timedelta(minutes=1), limit=10, lease=timedelta(minutes=1))
            assert [d.id for d in claimed] == ids
            assert claimed[0].group == make_group()

    async def test_lease_of_a_crashed_run_is_released_at_server_start(self, make_stores: MakeStores) -> None:
        async with opened(make_stores().outbox) as crashed:
            delivery_id = await crashed.enqueue(make_delivery())
            [claimed] = await crashed.claim_due(T0, limit=10, lease=timedelta(hours=1))
            assert claimed.id == delivery_id
            # "Crash": the first store never finishes the delivery nor closes;
            # the restarted process opens the same file.
            async with opened(make_stores().outbox) as restarted:
                # A CLI opening the file (outbox list) must not steal leases.
                assert await restarted.claim_due(T0, limit=10, lease=timedelta(minutes=1)) == []
                assert await restarted.release_leases() == 1
                [again] = await restarted.claim_due(T0, limit=10, lease=timedelta(minutes=1))
                assert again.id == delivery_id

    async def test_concurrent_claimers_never_get_the_same_row(self, make_stores: MakeStores) -> None:
        async with opened(make_stores().outbox) as a, opened(make_stores().outbox) as b:
            ids = await asyncio.gather(*(a.enqueue(make_delivery()) for _ in range(60)))
            lease = timedelta(minutes=5)
            batches = await asyncio.gather(*(s.claim_due(T0, limit=7, lease=lease) for s in (a, b) * 10))
            claimed = [d.id for batch in batches for d in batch]
            assert len(claimed) == len(set(claimed)), "a row was claimed twice"
            assert sorted(claimed) == sorted(ids)

    async def test_claims_and_enqueues_interleave_safely(self, store: OutboxStore) -> None:
        """Claims running while the writer commits must not land inside its transaction."""
        lease = timedelta(minutes=5)
        ids, batches = await asyncio.gather(
            asyncio.gather(*(store.enqueue(make_delivery()) for _ in range(100))),
            asyncio.gather(*(store.claim_due(T0, limit=5, lease=lease) for _ in range(20))),
        )
        claimed = [d.id for batch in batches for d in batch]
        assert len(set(ids)) == 100
        assert len(claimed) == len(set(claimed)) and set(claimed) <= set(ids)
        rest = await store.claim_due(T0, limit=200, lease=lease)
        assert sorted(claimed + [d.id for d in rest]) == sorted(ids)

    async def test_leased_rows_wait_for_the_lease_to_expire(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        lease = timedelta(seconds=30)
        assert [d.id for d in await store.claim_due(T0, limit=10, lease=lease)] == [delivery_id]

        assert await store.claim_due(T0 + timedelta(seconds=10), limit=10, lease=lease) == []
        assert await store.next_due_at() == T0 + lease

        [again] = await store.claim_due(T0 + lease, limit=10, lease=lease)
        assert again.id == delivery_id

    async def test_claim_is_oldest_first_limited_and_skips_future_rows(
        self,
        store: OutboxStore,
    ) -> None:
        late = await store.enqueue(make_delivery(T0 + timedelta(seconds=3)))
        early = await store.enqueue(make_delivery(T0 + timedelta(seconds=1)))
        middle = await store.enqueue(make_delivery(T0 + timedelta(seconds=2)))
        future = await store.enqueue(make_delivery(T0 + timedelta(hours=1)))
        now = T0 + timedelta(seconds=10)
        lease = timedelta(hours=2)  # outlasts the future row's due time

        first = await store.claim_due(now, limit=2, lease=lease)
        rest = await store.claim_due(now, limit=10, lease=lease)

        assert [d.id for d in first] == [early, middle]
        assert [d.id for d in rest] == [late]
        assert await store.next_due_at() == T0 + timedelta(hours=1)
        assert future not in {d.id for d in first + rest}
        assert await store.claim_due(now, limit=0, lease=lease) == []

    async def test_next_due_at_is_none_when_empty(self, store: OutboxStore) -> None:
        assert await store.next_due_at() is None

    async def test_reschedule_counts_the_attempt_and_defers(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        await store.claim_due(T0, limit=1, lease=timedelta(minutes=5))
        retry_at = T0 + timedelta(seconds=60)

        await store.reschedule(delivery_id, retry_at, "server_error: 502")

        assert await store.next_due_at() == retry_at  # lease released
        assert (
            await store.claim_due(retry_at - timedelta(seconds=1), limit=1, lease=timedelta(minutes=5)) == []
        )
        [claimed] = await store.claim_due(retry_at, limit=1, lease=timedelta(minutes=5))
        assert (claimed.attempts, claimed.next_attempt_at) == (1, retry_at)
        assert claimed.last_error == "server_error: 502"

        await store.reschedule(delivery_id, retry_at + timedelta(seconds=60), "again")
        [row] = await store.list()
        assert row.attempts == 2 and row.status is DeliveryStatus.PENDING

    async def test_mark_dead_then_retry_revives(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        await store.record_progress(delivery_id, 1)
        await store.reschedule(delivery_id, T0, "timeout")
        died_at = T0 + timedelta(minutes=1)

        await store.mark_dead(delivery_id, "content_too_long", died_at)

        [dead] = await store.list(DeliveryStatus.DEAD)
        assert (dead.id, dead.last_error, dead.finished_at) == (
            delivery_id,
            "content_too_long",
            died_at,
        )
        assert await store.count(DeliveryStatus.DEAD) == 1
        assert await store.claim_due(T0 + timedelta(days=1), limit=10, lease=timedelta(minutes=1)) == []

        revived_at = T0 + timedelta(hours=1)
        assert await store.retry(delivery_id, revived_at) is True

        [claimed] = await store.claim_due(revived_at, limit=10, lease=timedelta(minutes=1))
        assert claimed.id == delivery_id
        assert (claimed.status, claimed.attempts, claimed.next_attempt_at) == (
            DeliveryStatus.PENDING,
            0,
            revived_at,
        )
        assert claimed.last_error == "content_too_long"  # history for the operator
        assert claimed.finished_at is None
        assert claimed.parts_sent == 1  # parts WeCom accepted are never resent
        assert await store.count(DeliveryStatus.DEAD) == 0

    async def test_retry_of_a_pending_row_makes_it_due_now(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        await store.reschedule(delivery_id, T0 + timedelta(hours=2), "rate_limited")

        assert await store.retry(delivery_id, T0 + timedelta(minutes=1)) is True

        [claimed] = await store.claim_due(T0 + timedelta(minutes=1), limit=1, lease=timedelta(minutes=1))
        assert claimed.attempts == 0

    async def test_retry_does_not_break_a_lease_in_flight(self, store: OutboxStore) -> None:
        delivery_id = await store.enqueue(make_delivery())
        await store.claim_due(T0, limit=1, lease=timedelta(minutes=5))

        assert await store.retry(delivery_id, T0 + timedelta(seconds=1)) is True

        assert await store.claim_due(T0 + timedelta(seconds=1), limit=1, lease=timedelta(minutes=5)) == []

    async def test_retry_unknown_or_sent_is_false(self, store: OutboxStore) -> None:
        assert await store.retry(424242, T0) is False
        delivery_id = await store.enqueue(make_delivery())
        await store.mark_sent(delivery_id, T0)
        assert await store.retry(delivery_id, T0) is False
        assert await store.count(DeliveryStatus.SENT) == 1

    async def test_list_filters_by_status_newest_first(self, store: OutboxStore) -> None:
        ids = [await store.enqueue(make_delivery(request_id=f"r{i}")) for i in range(5)]
        await store.mark_sent(ids[0], T0)
        await store.mark_dead(ids[1], "bad", T0)
        await store.mark_sent(ids[3], T0)

        assert [d.id for d in await store.list()] == ids[::-1]
        assert [d.id for d in await store.list(limit=2)] == [ids[4], ids[3]]
        assert [d.id for d in await store.list(DeliveryStatus.SENT)] == [ids[3], ids[0]]
        assert [d.id for d in await store.list(DeliveryStatus.DEAD)] == [ids[1]]
        assert [d.id for d in await store.list(DeliveryStatus.PENDING)] == [ids[4], ids[2]]
        assert await store.count(DeliveryStatus.PENDING) == 2

    async def test_delete_finished_prunes_old_sent_rows_only(self, store: OutboxStore) -> None:
        old_sent, new_sent, old_dead, pending = [await store.enqueue(make_delivery()) for _ in range(4)]
        await store.mark_sent(old_sent, T0)
        await store.mark_sent(new_sent, T0 + timedelta(days=8))
        await store.mark_dead(old_dead, "bad", T0)

        assert await store.delete_finished(T0 + timedelta(days=7)) == 1

        assert {d.id for d in await store.list()} == {new_sent, old_dead, pending}
        # Ids are never reused after pruning.
        assert await store.enqueue(make_delivery()) > pending
