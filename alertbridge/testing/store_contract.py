"""The suite every store must pass: the promises of ``OutboxStore`` and ``StateStore``.

A backend's test module subclasses ``OutboxContract`` and ``StateContract``
(their names must start with ``Test`` for pytest to collect them) and
provides one fixture, ``make_stores``: a callable that builds a fresh,
unopened ``Stores`` on the same backing store (file, database) every time it
is called within a test, so a test can open a second store beside the first,
or reopen after closing. See tests/test_store_contract.py for SQLite.

What is specific to one backend (files, fsync, migrations from older schema
versions, disk full, locks) stays in that backend's own tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol, TypeVar

import pytest

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.messengers import RateLimit
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.stores import (
    DeliveryStatus,
    DigestClaim,
    DigestClaimStatus,
    DigestPartRecord,
    NewDelivery,
    OutboxStore,
    Stores,
)
from alertbridge.stores.state import (
    Attachment,
    AuditEntry,
    CardRecord,
    Resolution,
    ResolutionState,
    SentMessage,
    SilenceRecord,
    StateStore,
)

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


class MakeStores(Protocol):
    """Builds a new, unopened ``Stores`` on the test's one backing store."""

    def __call__(self) -> Stores: ...


class _Openable(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


_S = TypeVar("_S", bound=_Openable)


@asynccontextmanager
async def opened(store: _S) -> AsyncIterator[_S]:
    """``store``, open for the block and closed after it."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- values the outbox tests store ------------------------------------------------


def make_group(name: str = "HighCPU", *, note: str = "CPU 使用率过高", alerts: int = 2) -> AlertGroup:
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key='{}:{alertname="' + name + '"}',
        alerts=tuple(
            Alert(
                status=Status.FIRING if i % 2 == 0 else Status.RESOLVED,
                labels={"alertname": name, "instance": f"node-{i}", "severity": "critical"},
                annotations={"summary": note},
                starts_at=T0 - timedelta(minutes=5 + i),
                ends_at=None if i % 2 == 0 else T0 - timedelta(minutes=1),
                fingerprint=f"fp{i:04d}",
                generator_url=f"http://prom/graph?g0.expr=up{i}",
            )
            for i in range(alerts)
        ),
        group_labels={"alertname": name},
        common_labels={"alertname": name, "severity": "critical"},
        common_annotations={},
        external_url="http://alertmanager:9093",
        source_receiver="wecom-ops",
        truncated_alerts=3,
    )


def make_delivery(
    accepted_at: datetime = T0, *, request_id: str = "req-1", group: AlertGroup | None = None
) -> NewDelivery:
    return NewDelivery(
        receiver="ops",
        channel="app",
        recipients=Recipients(to_user=("zhangsan", "lisi"), to_party=("2",), to_tag=()),
        group=group or make_group(),
        request_id=request_id,
        accepted_at=accepted_at,
    )


# -- values the state tests store ---------------------------------------------------


OPS = Recipients(to_user=("zhangsan", "lisi"), to_party=("2",))


def make_ref_group(
    name: str = "HighCPU",
    *,
    firing: Iterable[str] = ("fp-a",),
    resolved: Iterable[str] = (),
    key: str | None = None,
    group_labels: dict[str, str] | None = None,
    common_alertname: bool = True,
) -> AlertGroup:
    """A group whose alerts are ``firing`` and ``resolved`` fingerprints."""
    alerts = tuple(
        Alert(
            status=status,
            labels={"alertname": name, "instance": fp, "severity": "critical"},
            annotations={"summary": "CPU 使用率过高"},
            starts_at=T0 - timedelta(minutes=5),
            ends_at=None if status is Status.FIRING else T0,
            fingerprint=fp,
        )
        for fps, status in ((firing, Status.FIRING), (resolved, Status.RESOLVED))
        for fp in fps
    )
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED,
        group_key=key if key is not None else '{}:{alertname="' + name + '"}',
        alerts=alerts,
        group_labels={"alertname": name} if group_labels is None else group_labels,
        common_labels={"alertname": name, "severity": "critical"} if common_alertname else {},
        external_url="http://alertmanager:9093",
        source_receiver="wecom-ops",
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def silence(silence_id: str, *, ref: int | None = 1, ends: float = 120, created: float = 0) -> SilenceRecord:
    return SilenceRecord(
        silence_id=silence_id,
        silencer="alertmanager",
        ref=ref,
        created_by="zhangsan",
        ends_at=at(ends),
        matchers='alertname="HighCPU", instance=~"a|b"',
        created_at=at(created),
    )


class OutboxContract:
    """What the webhook handler and the dispatcher rely on from any ``OutboxStore``:
    nothing acknowledged is lost, nothing is claimed twice."""

    @pytest.fixture
    async def store(self, make_stores: MakeStores) -> AsyncIterator[OutboxStore]:
        async with opened(make_stores().outbox) as s:
            yield s

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


class StateContract:
    """What users see of any ``StateStore``: ``#27`` keeps naming the same alert
    group, an ack silences exactly the unchanged repeats of what was
    acknowledged, a WeCom callback acts once, a card's response_code is spent once."""

    @pytest.fixture
    async def outbox(self, make_stores: MakeStores) -> AsyncIterator[OutboxStore]:
        """The outbox of the same backing store, open while the state store is."""
        async with opened(make_stores().outbox) as s:
            yield s

    @pytest.fixture
    async def store(self, make_stores: MakeStores, outbox: OutboxStore) -> AsyncIterator[StateStore]:
        """The state store, opened while the outbox has the same backing store open."""
        async with opened(make_stores().state) as s:
            yield s

    async def test_repeat_notifications_keep_the_number(self, store: StateStore) -> None:
        first = await store.record_notification("ops", make_ref_group(), OPS, at(0))
        again = await store.record_notification("ops", make_ref_group(), OPS, at(5))
        third = await store.record_notification("ops", make_ref_group(), OPS, at(10))

        assert first.ref.ref == again.ref.ref == third.ref.ref
        assert first.changed and not again.changed and not third.changed
        assert third.ref.created_at == at(0)
        assert third.ref.updated_at == at(10)

    async def test_new_group_or_receiver_gets_a_new_increasing_number(self, store: StateStore) -> None:
        cpu = await store.record_notification("ops", make_ref_group("HighCPU"), OPS, at(0))
        disk = await store.record_notification("ops", make_ref_group("DiskFull"), OPS, at(1))
        cpu_dba = await store.record_notification("dba", make_ref_group("HighCPU"), OPS, at(2))

        assert cpu.ref.ref < disk.ref.ref < cpu_dba.ref.ref
        assert cpu.ref.ref >= 1
        assert disk.changed and cpu_dba.changed
        assert (
            await store.record_notification("ops", make_ref_group("HighCPU"), OPS, at(3))
        ).ref.ref == cpu.ref.ref

    async def test_stored_fields_round_trip(self, store: StateStore) -> None:
        group = make_ref_group(firing=("fp-a", "fp-b"), resolved=("fp-c",))
        update = await store.record_notification("ops", group, OPS, at(0))
        ref = await store.get_ref(update.ref.ref)

        assert ref == update.ref
        assert ref is not None
        assert ref.receiver == "ops"
        assert ref.source == "alertmanager"
        assert ref.group_key == group.group_key
        assert ref.external_url == "http://alertmanager:9093"
        assert ref.title == "HighCPU"
        assert ref.recipients == OPS
        assert ref.firing and ref.resolved_at is None and ref.ack is None
        assert [(a.fingerprint, a.firing) for a in ref.alerts] == [
            ("fp-a", True),
            ("fp-b", True),
            ("fp-c", False),
        ]
        assert dict(ref.alerts[0].labels) == {
            "alertname": "HighCPU",
            "instance": "fp-a",
            "severity": "critical",
        }

    async def test_unknown_ref_is_none(self, store: StateStore) -> None:
        assert await store.get_ref(404) is None
        assert await store.set_ack(404, "zhangsan", at(0)) is None

    async def test_resolved_then_firing_again_keeps_the_number(self, store: StateStore) -> None:
        fired = await store.record_notification("ops", make_ref_group(), OPS, at(0))
        resolved = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(5)
        )
        repeat = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(9)
        )
        again = await store.record_notification("ops", make_ref_group(), OPS, at(60))

        assert fired.ref.ref == resolved.ref.ref == again.ref.ref
        assert not resolved.ref.firing and resolved.ref.resolved_at == at(5)
        assert repeat.ref.resolved_at == at(5), "a repeated resolve must not move the resolve time"
        assert again.ref.firing and again.ref.resolved_at is None
        assert resolved.changed and again.changed

    async def test_first_notification_may_already_be_resolved(self, store: StateStore) -> None:
        update = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(0)
        )
        assert update.changed and not update.suppressed
        assert not update.ref.firing and update.ref.resolved_at == at(0)

    async def test_ack_is_kept_on_an_identical_repeat_which_is_suppressed(self, store: StateStore) -> None:
        ref = (await store.record_notification("ops", make_ref_group(firing=("a", "b")), OPS, at(0))).ref.ref
        acked = await store.set_ack(ref, "zhangsan", at(1))
        assert acked is not None and acked.ack is not None
        assert (acked.ack.user, acked.ack.at) == ("zhangsan", at(1))

        repeat = await store.record_notification("ops", make_ref_group(firing=("b", "a")), OPS, at(5))
        assert repeat.suppressed and not repeat.changed
        assert repeat.ref.ack == acked.ack

        # A resolved alert joining the group changes nothing that still fires.
        with_resolved = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b"), resolved=("c",)), OPS, at(6)
        )
        assert with_resolved.suppressed and not with_resolved.changed

    async def test_a_retried_delivery_keeps_its_first_verdict(self, store: StateStore) -> None:
        ref = (
            await store.record_notification("ops", make_ref_group(firing=("a",)), OPS, at(0), delivery_id=1)
        ).ref.ref
        await store.set_ack(ref, "zhangsan", at(1))
        grew = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b")), OPS, at(5), delivery_id=2
        )
        assert grew.changed and not grew.suppressed
        # Its send failed and is retried: it is still news, not a repeat of itself.
        retried = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b")), OPS, at(5), delivery_id=2
        )
        assert not retried.suppressed and retried.ref.ref == ref
        # Another notification with the same alerts is the repeat that is held back.
        repeat = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b")), OPS, at(9), delivery_id=3
        )
        assert repeat.suppressed

    async def test_ack_holds_when_the_firing_alerts_change_but_the_change_is_sent(
        self,
        store: StateStore,
    ) -> None:
        ref = (await store.record_notification("ops", make_ref_group(firing=("a", "b")), OPS, at(0))).ref.ref
        await store.set_ack(ref, "zhangsan", at(1))

        grew = await store.record_notification("ops", make_ref_group(firing=("a", "b", "c")), OPS, at(5))
        assert grew.changed and not grew.suppressed
        assert grew.ref.ack is not None and grew.ref.ack.user == "zhangsan"

        shrank = await store.record_notification(
            "ops", make_ref_group(firing=("a",), resolved=("b", "c")), OPS, at(7)
        )
        assert shrank.changed and not shrank.suppressed and shrank.ref.ack is not None

    async def test_ack_shows_on_the_resolution_and_is_cleared_when_it_fires_again(
        self,
        store: StateStore,
    ) -> None:
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        await store.set_ack(ref, "zhangsan", at(1))

        resolved = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(5)
        )
        assert resolved.ref.ack is not None and not resolved.suppressed

        refired = await store.record_notification("ops", make_ref_group(), OPS, at(10))
        assert refired.ref.ack is None and not refired.suppressed and refired.changed

    async def test_not_acked_is_never_suppressed(self, store: StateStore) -> None:
        await store.record_notification("ops", make_ref_group(), OPS, at(0))
        repeat = await store.record_notification("ops", make_ref_group(), OPS, at(5))
        assert not repeat.changed and not repeat.suppressed

    async def test_ack_of_a_resolved_ref_does_not_suppress_its_refiring(self, store: StateStore) -> None:
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        await store.record_notification("ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(5))
        await store.set_ack(ref, "zhangsan", at(6))
        refired = await store.record_notification("ops", make_ref_group(), OPS, at(10))
        assert refired.changed and not refired.suppressed and refired.ref.ack is None

    async def test_sent_index_orders_by_last_sent_and_filters_firing(self, store: StateStore) -> None:
        cpu = (await store.record_notification("ops", make_ref_group("HighCPU"), OPS, at(0))).ref.ref
        disk = (await store.record_notification("ops", make_ref_group("DiskFull"), OPS, at(0))).ref.ref
        mem = (await store.record_notification("ops", make_ref_group("LowMem"), OPS, at(0))).ref.ref

        await store.record_sent(cpu, ["zhangsan", "lisi", "zhangsan"], at(1))
        await store.record_sent(disk, ["zhangsan"], at(2))
        await store.record_sent(mem, ["lisi"], at(3))
        await store.record_sent(cpu, ["zhangsan"], at(4))  # re-sent: newest again for zhangsan

        latest = await store.latest_ref_for_user("zhangsan")
        assert latest is not None and latest.ref == cpu
        assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [
            cpu,
            disk,
        ]
        assert [r.ref for r in await store.refs_for_user("lisi", firing_only=False, limit=10)] == [mem, cpu]
        assert [r.ref for r in await store.refs_for_user("lisi", firing_only=False, limit=1)] == [mem]

        await store.record_notification(
            "ops", make_ref_group("HighCPU", firing=(), resolved=("fp-a",)), OPS, at(5)
        )
        assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=True, limit=10)] == [disk]
        assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [
            cpu,
            disk,
        ]
        latest = await store.latest_ref_for_user("zhangsan")
        assert latest is not None and latest.ref == cpu and not latest.firing

    async def test_sent_index_for_unknown_user_or_ref(self, store: StateStore) -> None:
        assert await store.latest_ref_for_user("nobody") is None
        assert await store.refs_for_user("nobody", firing_only=False, limit=10) == []
        await store.record_sent(404, ["zhangsan"], at(0))  # unknown reference: nothing remembered
        await store.record_sent(404, [], at(0))
        assert await store.latest_ref_for_user("zhangsan") is None

    async def test_claim_callback_once_within_ttl(self, store: StateStore) -> None:
        ttl = timedelta(minutes=5)
        assert await store.claim_callback("msg-1", at(0), ttl)
        assert not await store.claim_callback("msg-1", at(1), ttl)
        assert not await store.claim_callback("msg-1", at(4.9), ttl)
        assert await store.claim_callback("msg-2", at(1), ttl)

    async def test_expired_callback_key_can_be_claimed_again(self, store: StateStore) -> None:
        ttl = timedelta(minutes=5)
        assert await store.claim_callback("msg-1", at(0), ttl)
        assert await store.claim_callback("msg-1", at(5), ttl)  # expiry is exclusive
        assert not await store.claim_callback("msg-1", at(9), ttl), "the re-claim starts a new ttl"
        assert await store.claim_callback("msg-1", at(10), ttl)

    async def test_callback_reply_is_kept_with_its_key(self, store: StateStore) -> None:
        ttl = timedelta(minutes=5)
        assert await store.claim_callback("msg-1", at(0), ttl)
        assert await store.callback_reply("msg-1", at(1)) is None, "claimed, not answered yet"
        await store.save_callback_reply("msg-1", "<xml>回复</xml>")
        await store.save_callback_reply("unknown", "ignored")
        assert await store.callback_reply("msg-1", at(2)) == "<xml>回复</xml>"
        assert await store.callback_reply("unknown", at(2)) is None
        assert await store.callback_reply("msg-1", at(5)) is None, "expired with its key"
        assert await store.claim_callback("msg-1", at(5), ttl)
        assert await store.callback_reply("msg-1", at(6)) is None, "a new claim forgets the old reply"

    async def test_callback_reply_is_seen_from_another_connection(
        self, store: StateStore, make_stores: MakeStores
    ) -> None:
        async with opened(make_stores().state) as other:
            assert await store.claim_callback("msg-1", at(0), timedelta(minutes=5))
            assert not await other.claim_callback("msg-1", at(1), timedelta(minutes=5))
            await store.save_callback_reply("msg-1", "reply")
            assert await other.callback_reply("msg-1", at(1)) == "reply"

    async def test_concurrent_claims_exactly_one_wins(self, store: StateStore) -> None:
        results = await asyncio.gather(
            *(store.claim_callback("dup", at(0), timedelta(minutes=5)) for _ in range(20))
        )
        assert results.count(True) == 1

    async def test_concurrent_claims_on_two_connections_exactly_one_wins(
        self, store: StateStore, make_stores: MakeStores
    ) -> None:
        async with opened(make_stores().state) as other:
            for round_ in range(5):
                key = f"dup-{round_}"
                results = await asyncio.gather(
                    *(
                        (store if i % 2 else other).claim_callback(key, at(0), timedelta(minutes=5))
                        for i in range(20)
                    )
                )
                assert results.count(True) == 1, results

    async def test_silence_lifecycle(self, store: StateStore) -> None:
        s1 = silence("s1", ends=120, created=0)
        s2 = silence("s2", ends=30, created=1)
        other = silence("s3", ref=2, created=2)
        free = silence("s4", ref=None, created=3)
        for record in (s1, s2, other, free):
            await store.add_silence(record)

        assert await store.get_silence("s1") == s1
        assert await store.get_silence("nope") is None
        assert await store.silences_for_ref(1, active_at=at(10)) == [s1, s2]
        assert await store.silences_for_ref(1, active_at=at(30)) == [s1], "ends_at is exclusive"
        assert await store.active_silences(at(10)) == [s1, s2, other, free]

        # The silencer re-created s1 with a later end: same record, new id.
        await store.replace_silence_id("s1", "s1b", at(240))
        assert await store.get_silence("s1") is None
        moved = await store.get_silence("s1b")
        assert moved is not None
        assert (moved.ends_at, moved.created_by, moved.ref, moved.matchers) == (
            at(240),
            "zhangsan",
            1,
            s1.matchers,
        )
        await store.replace_silence_id("gone", "whatever", at(1))  # unknown: no-op

        await store.mark_silence_expired("s1b", at(50))
        await store.mark_silence_expired("s1b", at(60))  # the first time counts
        expired = await store.get_silence("s1b")
        assert expired is not None and expired.expired_at == at(50)
        assert [s.silence_id for s in await store.silences_for_ref(1, active_at=at(10))] == ["s2"]
        assert [s.silence_id for s in await store.active_silences(at(40))] == ["s3", "s4"]

    async def test_add_silence_with_the_same_id_replaces(self, store: StateStore) -> None:
        await store.add_silence(silence("s1", ends=10))
        via_ack = SilenceRecord(
            silence_id="s1",
            silencer="alertmanager",
            ref=7,
            created_by="lisi",
            ends_at=at(90),
            matchers='alertname="X"',
            created_at=at(1),
            via_ack=True,
        )
        await store.add_silence(via_ack)
        assert await store.get_silence("s1") == via_ack

    async def test_audit_newest_first_with_ids(self, store: StateStore) -> None:
        entries = [
            AuditEntry(at=at(0), user="zhangsan", action="ack", ref=1, result="ok"),
            AuditEntry(
                at=at(1), user="lisi", action="silence", ref=1, result="ok", detail="2h", silence_id="s1"
            ),
            AuditEntry(at=at(1), user="wangwu", action="help", ref=None, result="ok"),
            AuditEntry(
                at=at(2), user="lisi", action="button:ack", ref=2, result="refused", detail="not allowed"
            ),
        ]
        for entry in entries:
            await store.add_audit(entry)

        listed = await store.list_audit(10)
        assert [e.user for e in listed] == ["lisi", "wangwu", "lisi", "zhangsan"]
        assert all(e.id is not None for e in listed)
        ids = [e.id for e in listed]
        assert len(set(ids)) == 4
        assert listed[2].silence_id == "s1" and listed[2].detail == "2h"
        assert listed[0].result == "refused" and listed[0].ref == 2
        assert [e.user for e in await store.list_audit(2)] == ["lisi", "wangwu"]

        assert [replace(e, id=None) for e in reversed(listed)] == entries

    async def test_attachments_sit_beside_their_audit_row(self, store: StateStore) -> None:
        await store.add_audit(AuditEntry(at=at(0), user="zhangsan", action="ack", ref=7, result="ok"))
        await store.add_audit(AuditEntry(at=at(1), user="zhangsan", action="help", ref=None, result="ok"))
        await store.add_audit(AuditEntry(at=at(2), user="lisi", action="ack", ref=9, result="ok"))
        # The reference of the member's most recent action that named one.
        assert await store.latest_audit_ref("zhangsan") == 7
        assert await store.latest_audit_ref("wangwu") is None

        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
        entry = AuditEntry(
            at=at(3), user="zhangsan", action="attach:image", ref=7, result="ok", detail="截图.png"
        )
        audit_id = await store.add_attachment(entry, Attachment("image", "截图.png", "image/png", "m-1", png))
        listed = await store.list_audit(10)
        assert listed[0] == replace(entry, id=audit_id)
        kept = await store.get_attachment(audit_id)
        assert kept == Attachment("image", "截图.png", "image/png", "m-1", png, audit_id=audit_id)
        assert await store.get_attachment(listed[1].id or 0) is None
        assert await store.latest_audit_ref("zhangsan") == 7

    async def test_card_response_code_is_usable_once(self, store: StateStore) -> None:
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        card = CardRecord(
            task_id="task-1",
            ref=ref,
            app="ops-app",
            users=("zhangsan", "lisi"),
            response_code="code-1",
            response_code_at=at(0),
        )
        await store.save_card(card)
        await store.save_card(
            CardRecord(
                task_id="task-2",
                ref=ref,
                app="ops-app",
                users=("wangwu",),
                response_code=None,
                response_code_at=None,
            )
        )
        assert [c.task_id for c in await store.cards_for_ref(ref)] == ["task-1", "task-2"]
        assert (await store.cards_for_ref(ref))[0] == card
        assert await store.get_card("task-1") == card
        assert await store.get_card("no-such-task") is None

        results = await asyncio.gather(*(store.use_response_code("task-1") for _ in range(5)))
        assert results.count("code-1") == 1 and results.count(None) == 4
        assert await store.use_response_code("task-2") is None
        assert await store.use_response_code("no-such-task") is None
        spent = (await store.cards_for_ref(ref))[0]
        assert spent.response_code is None and spent.response_code_at is None

    async def test_card_of_an_unknown_ref_is_not_saved(self, store: StateStore) -> None:
        await store.save_card(
            CardRecord(task_id="t", ref=404, app="a", users=(), response_code="c", response_code_at=at(0))
        )
        assert await store.cards_for_ref(404) == []
        assert await store.get_card("t") is None
        assert await store.use_response_code("t") is None

    async def test_a_sent_message_is_taken_once_and_pruned_with_its_ref(self, store: StateStore) -> None:
        """What ``on_resolve = "recall"`` relies on: messages kept per reference,
        oldest first; each taken by exactly one caller; none for a gone reference."""
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        later = SentMessage(msgid="m-2", ref=ref, app="ops-app", sent_at=at(2))
        first = SentMessage(msgid="m-1", ref=ref, app="ops-app", sent_at=at(1))
        await store.save_sent_message(later)
        await store.save_sent_message(first)
        await store.save_sent_message(first)  # a retried after_sent changes nothing
        await store.save_sent_message(SentMessage(msgid="m-x", ref=404, app="a", sent_at=at(1)))
        assert await store.sent_messages_for_ref(ref) == [first, later]
        assert await store.sent_messages_for_ref(404) == []

        taken = await asyncio.gather(*(store.take_sent_message("m-1") for _ in range(5)))
        assert taken.count(True) == 1
        assert not await store.take_sent_message("m-x")
        assert await store.sent_messages_for_ref(ref) == [later]
        await store.save_sent_message(first)  # put back after a recall that failed
        assert await store.sent_messages_for_ref(ref) == [first, later]

        await store.record_notification("ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(3))
        await store.prune(at(3) + timedelta(days=8), timedelta(days=7))
        assert await store.sent_messages_for_ref(ref) == []
        assert not await store.take_sent_message("m-2")

    async def test_prune_forgets_old_resolved_refs_keys_and_silences_but_not_audit(
        self,
        store: StateStore,
    ) -> None:
        retention = timedelta(days=7)
        old = (await store.record_notification("ops", make_ref_group("Old"), OPS, at(0))).ref.ref
        await store.record_notification(
            "ops", make_ref_group("Old", firing=(), resolved=("fp-a",)), OPS, at(10)
        )
        recent = (await store.record_notification("ops", make_ref_group("Recent"), OPS, at(0))).ref.ref
        now = at(10) + retention + timedelta(minutes=1)
        await store.record_notification(
            "ops", make_ref_group("Recent", firing=(), resolved=("fp-a",)), OPS, now - timedelta(days=1)
        )
        firing = (await store.record_notification("ops", make_ref_group("Firing"), OPS, at(0))).ref.ref
        for ref in (old, recent, firing):
            await store.record_sent(ref, ["zhangsan"], at(1))
            await store.save_card(
                CardRecord(
                    task_id=f"t{ref}",
                    ref=ref,
                    app="a",
                    users=("zhangsan",),
                    response_code="c",
                    response_code_at=at(1),
                )
            )

        await store.claim_callback("expired", at(0), timedelta(minutes=5))
        await store.claim_callback("live", now - timedelta(minutes=1), timedelta(minutes=5))

        await store.add_silence(silence("ran-out-long-ago", ref=old, ends=0))
        await store.add_silence(silence("expired-long-ago", ref=old, ends=10**6))
        await store.mark_silence_expired("expired-long-ago", at(1))
        await store.add_silence(silence("expired-recently", ref=recent, ends=10**6))
        await store.mark_silence_expired("expired-recently", now - timedelta(days=1))
        await store.add_silence(silence("active", ref=firing, ends=10**7))

        await store.add_audit(AuditEntry(at=at(0), user="zhangsan", action="ack", ref=old, result="ok"))

        deleted = await store.prune(now, retention)

        # old ref + its sent row + its card, one callback key, two silences.
        assert deleted == 3 + 1 + 2
        assert await store.get_ref(old) is None
        assert await store.get_ref(recent) is not None
        assert await store.get_ref(firing) is not None
        assert await store.cards_for_ref(old) == []
        assert await store.get_card(f"t{old}") is None
        assert len(await store.cards_for_ref(recent)) == 1
        assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [
            firing,
            recent,
        ]
        assert await store.claim_callback("expired", now, timedelta(minutes=5))
        assert not await store.claim_callback("live", now, timedelta(minutes=5))
        assert await store.get_silence("ran-out-long-ago") is None
        assert await store.get_silence("expired-long-ago") is None
        assert await store.get_silence("expired-recently") is not None
        assert await store.get_silence("active") is not None
        assert len(await store.list_audit(10)) == 1

        # The pruned group fires again: a new number, never the old one.
        back = await store.record_notification("ops", make_ref_group("Old"), OPS, now)
        assert back.changed and back.ref.ref > firing

        assert await store.prune(now, retention) == 0

    async def test_state_survives_close_and_reopen(
        self, make_stores: MakeStores, outbox: OutboxStore
    ) -> None:
        store = make_stores().state
        await store.open()
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        await store.set_ack(ref, "zhangsan", at(1))
        await store.record_sent(ref, ["zhangsan"], at(1))
        await store.claim_callback("k", at(0), timedelta(minutes=5))
        await store.add_silence(silence("s1", ref=ref))
        await store.add_audit(AuditEntry(at=at(1), user="zhangsan", action="ack", ref=ref, result="ok"))
        await store.save_card(
            CardRecord(
                task_id="t", ref=ref, app="a", users=("zhangsan",), response_code="c", response_code_at=at(1)
            )
        )
        before = await store.get_ref(ref)
        await store.close()
        await store.close()  # idempotent

        async with opened(make_stores().state) as reopened:
            assert await reopened.get_ref(ref) == before
            latest = await reopened.latest_ref_for_user("zhangsan")
            assert latest is not None and latest.ref == ref
            assert not await reopened.claim_callback("k", at(1), timedelta(minutes=5))
            assert await reopened.get_silence("s1") == silence("s1", ref=ref)
            assert len(await reopened.list_audit(10)) == 1
            assert await reopened.use_response_code("t") == "c"
            repeat = await reopened.record_notification("ops", make_ref_group(), OPS, at(5))
            assert repeat.suppressed and repeat.ref.ref == ref
            new = await reopened.record_notification("ops", make_ref_group("Other"), OPS, at(5))
            assert new.ref.ref > ref

    async def test_a_resolution_is_worked_by_one_upkeep_and_decided_once(self, store: StateStore) -> None:
        """The send path records a resolved delivery's work; one upkeep at a time
        holds it; its first outcome is the one every later claim reads."""
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        lease = timedelta(seconds=30)
        first = await store.request_resolution(7, ref, "ops", at(1))
        assert first == Resolution(delivery_id=7, ref=ref, receiver="ops", requested_at=at(1))
        # Asked again (the delivery claimed again before the outcome): nothing changes.
        assert await store.request_resolution(7, ref, "ops", at(2)) == first
        assert await store.get_resolution(7) == first
        assert await store.get_resolution(8) is None
        later = await store.request_resolution(8, ref, "ops", at(3))

        # Concurrent upkeeps: each pending resolution goes to one of them, oldest first.
        claims = await asyncio.gather(*(store.claim_resolutions(at(4), lease, 10) for _ in range(4)))
        claimed = [r for claim in claims for r in claim]
        assert sorted(r.delivery_id for r in claimed) == [7, 8]
        assert all([r.delivery_id for r in claim] == sorted(r.delivery_id for r in claim) for claim in claims)
        assert await store.claim_resolutions(at(4), lease, 10) == []
        # A holder that went away (a crash, a reload) lets go when its lease runs out.
        assert [r.delivery_id for r in await store.claim_resolutions(at(4) + lease, lease, 1)] == [7]

        done = await store.decide_resolution(7, ResolutionState.DONE, at(5))
        assert done == replace(first, state=ResolutionState.DONE, decided_at=at(5))
        # The first decision counts: a late "failed" (patience ran out) changes nothing.
        assert await store.decide_resolution(7, ResolutionState.FAILED, at(6)) == done
        failed = await store.decide_resolution(8, ResolutionState.FAILED, at(6))
        assert failed == replace(later, state=ResolutionState.FAILED, decided_at=at(6))
        assert await store.decide_resolution(9, ResolutionState.DONE, at(6)) is None
        assert await store.claim_resolutions(at(60), lease, 10) == []

    async def test_prune_forgets_decided_resolutions_and_those_of_gone_refs(self, store: StateStore) -> None:
        retention = timedelta(days=7)
        gone = (await store.record_notification("ops", make_ref_group("Gone"), OPS, at(0))).ref.ref
        await store.record_notification(
            "ops", make_ref_group("Gone", firing=(), resolved=("fp-a",)), OPS, at(1)
        )
        live = (await store.record_notification("ops", make_ref_group("Live"), OPS, at(0))).ref.ref
        await store.request_resolution(1, gone, "ops", at(1))
        await store.request_resolution(2, live, "ops", at(1))
        await store.decide_resolution(2, ResolutionState.DONE, at(2))
        await store.request_resolution(3, live, "ops", at(1))
        now = at(2) + retention + timedelta(minutes=1)
        await store.request_resolution(4, live, "ops", now)
        await store.decide_resolution(4, ResolutionState.FAILED, now)

        # The gone reference and its pending resolution, the old decided one.
        assert await store.prune(now, retention) == 1 + 1 + 1
        assert await store.get_resolution(1) is None
        assert await store.get_resolution(2) is None
        assert (pending := await store.get_resolution(3)) is not None
        assert pending.state is ResolutionState.PENDING
        assert (recent := await store.get_resolution(4)) is not None
        assert recent.state is ResolutionState.FAILED

    async def test_naive_datetime_is_refused(self, store: StateStore) -> None:
        with pytest.raises(ValueError, match="naive"):
            await store.record_notification("ops", make_ref_group(), OPS, datetime(2026, 5, 1))
        # The store is still usable afterwards.
        assert (await store.record_notification("ops", make_ref_group(), OPS, at(0))).changed
