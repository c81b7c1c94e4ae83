"""SqliteOutboxStore against a real SQLite file.

Each test pins one promise the dispatcher or the webhook handler relies on:
nothing acknowledged is lost, nothing is claimed twice, and a failing disk
turns into StoreError instead of a silently missing alert or a wedged store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.stores import DeliveryStatus, DigestPartRecord, NewDelivery
from alertbridge.stores.sqlite.db import from_us as _from_us
from alertbridge.stores.sqlite.db import to_us as _to_us
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.outbox_schema import MIGRATIONS, SCHEMA_VERSION
from tests.store_fixtures import T0, opened, pragmas, private_connection, write_locked


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


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteOutboxStore]:
    async with opened(SqliteOutboxStore(db_path)) as s:
        yield s


# -- round trip ---------------------------------------------------------------


async def test_enqueue_claim_mark_sent_round_trip(store: SqliteOutboxStore) -> None:
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


async def test_non_utc_aware_times_are_stored_as_the_same_instant(store: SqliteOutboxStore) -> None:
    shanghai = timezone(timedelta(hours=8))
    await store.enqueue(make_delivery(T0.astimezone(shanghai)))
    [claimed] = await store.claim_due(T0, limit=1, lease=timedelta(minutes=1))
    assert claimed.accepted_at == T0
    assert claimed.accepted_at.utcoffset() == timedelta(0)


async def test_naive_datetime_is_refused(store: SqliteOutboxStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.enqueue(make_delivery(T0.replace(tzinfo=None)))


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_timestamp_encoding_is_exact(value: datetime) -> None:
    assert _from_us(_to_us(value)) == value


async def test_record_progress_is_kept(store: SqliteOutboxStore) -> None:
    delivery_id = await store.enqueue(make_delivery())
    await store.record_progress(delivery_id, 2)
    [row] = await store.list()
    assert row.parts_sent == 2


# -- group commit ---------------------------------------------------------------


async def test_concurrent_enqueues_share_commits(store: SqliteOutboxStore) -> None:
    ids = await asyncio.gather(*(store.enqueue(make_delivery(request_id=f"req-{i}")) for i in range(200)))

    assert len(set(ids)) == 200
    assert store.commits <= 10, f"{store.commits} commits for 200 enqueues: no group commit"
    assert await store.count(DeliveryStatus.PENDING) == 200
    # Every caller got the id of its own row.
    by_id = {d.id: d.request_id for d in await store.list(limit=500)}
    assert [by_id[i] for i in ids] == [f"req-{i}" for i in range(200)]


async def test_batch_limit_caps_a_transaction(db_path: Path) -> None:
    async with opened(SqliteOutboxStore(db_path, batch_limit=16)) as store:
        ids = await asyncio.gather(*(store.enqueue(make_delivery()) for i in range(64)))
        assert len(set(ids)) == 64
        assert store.commits >= 4


async def test_close_drains_queued_enqueues(db_path: Path) -> None:
    store = SqliteOutboxStore(db_path)
    await store.open()
    tasks = [asyncio.create_task(store.enqueue(make_delivery(request_id=f"r{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # let every task queue its row
    await store.close()

    ids = await asyncio.gather(*tasks)
    assert len(set(ids)) == 50

    with pytest.raises(StoreError):
        await store.enqueue(make_delivery())

    async with opened(SqliteOutboxStore(db_path)) as reopened:
        assert await reopened.count(DeliveryStatus.PENDING) == 50


async def test_enqueue_before_open_raises(db_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteOutboxStore(db_path).enqueue(make_delivery())


# -- durability -------------------------------------------------------------------


async def test_pending_rows_survive_close_and_reopen(db_path: Path) -> None:
    async with opened(SqliteOutboxStore(db_path)) as first:
        ids = [await first.enqueue(make_delivery(T0 + timedelta(seconds=i))) for i in range(3)]

    async with opened(SqliteOutboxStore(db_path)) as second:
        claimed = await second.claim_due(T0 + timedelta(minutes=1), limit=10, lease=timedelta(minutes=1))
        assert [d.id for d in claimed] == ids
        assert claimed[0].group == make_group()


async def test_lease_of_a_crashed_run_is_released_at_server_start(db_path: Path) -> None:
    async with opened(SqliteOutboxStore(db_path)) as crashed:
        delivery_id = await crashed.enqueue(make_delivery())
        [claimed] = await crashed.claim_due(T0, limit=10, lease=timedelta(hours=1))
        assert claimed.id == delivery_id
        # "Crash": the first store never finishes the delivery nor closes;
        # the restarted process opens the same file.
        async with opened(SqliteOutboxStore(db_path)) as restarted:
            # A CLI opening the file (outbox list) must not steal leases.
            assert await restarted.claim_due(T0, limit=10, lease=timedelta(minutes=1)) == []
            assert await restarted.release_leases() == 1
            [again] = await restarted.claim_due(T0, limit=10, lease=timedelta(minutes=1))
            assert again.id == delivery_id


# -- claiming ---------------------------------------------------------------------


async def test_concurrent_claimers_never_get_the_same_row(db_path: Path) -> None:
    async with opened(SqliteOutboxStore(db_path)) as a, opened(SqliteOutboxStore(db_path)) as b:
        ids = await asyncio.gather(*(a.enqueue(make_delivery()) for _ in range(60)))
        lease = timedelta(minutes=5)
        batches = await asyncio.gather(*(s.claim_due(T0, limit=7, lease=lease) for s in (a, b) * 10))
        claimed = [d.id for batch in batches for d in batch]
        assert len(claimed) == len(set(claimed)), "a row was claimed twice"
        assert sorted(claimed) == sorted(ids)


async def test_claims_and_enqueues_interleave_safely(store: SqliteOutboxStore) -> None:
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


async def test_leased_rows_wait_for_the_lease_to_expire(store: SqliteOutboxStore) -> None:
    delivery_id = await store.enqueue(make_delivery())
    lease = timedelta(seconds=30)
    assert [d.id for d in await store.claim_due(T0, limit=10, lease=lease)] == [delivery_id]

    assert await store.claim_due(T0 + timedelta(seconds=10), limit=10, lease=lease) == []
    assert await store.next_due_at() == T0 + lease

    [again] = await store.claim_due(T0 + lease, limit=10, lease=lease)
    assert again.id == delivery_id


async def test_claim_is_oldest_first_limited_and_skips_future_rows(
    store: SqliteOutboxStore,
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


async def test_next_due_at_is_none_when_empty(store: SqliteOutboxStore) -> None:
    assert await store.next_due_at() is None


# -- outcomes -----------------------------------------------------------------------


async def test_reschedule_counts_the_attempt_and_defers(store: SqliteOutboxStore) -> None:
    delivery_id = await store.enqueue(make_delivery())
    await store.claim_due(T0, limit=1, lease=timedelta(minutes=5))
    retry_at = T0 + timedelta(seconds=60)

    await store.reschedule(delivery_id, retry_at, "server_error: 502")

    assert await store.next_due_at() == retry_at  # lease released
    assert await store.claim_due(retry_at - timedelta(seconds=1), limit=1, lease=timedelta(minutes=5)) == []
    [claimed] = await store.claim_due(retry_at, limit=1, lease=timedelta(minutes=5))
    assert (claimed.attempts, claimed.next_attempt_at) == (1, retry_at)
    assert claimed.last_error == "server_error: 502"

    await store.reschedule(delivery_id, retry_at + timedelta(seconds=60), "again")
    [row] = await store.list()
    assert row.attempts == 2 and row.status is DeliveryStatus.PENDING


async def test_mark_dead_then_retry_revives(store: SqliteOutboxStore) -> None:
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


async def test_retry_of_a_pending_row_makes_it_due_now(store: SqliteOutboxStore) -> None:
    delivery_id = await store.enqueue(make_delivery())
    await store.reschedule(delivery_id, T0 + timedelta(hours=2), "rate_limited")

    assert await store.retry(delivery_id, T0 + timedelta(minutes=1)) is True

    [claimed] = await store.claim_due(T0 + timedelta(minutes=1), limit=1, lease=timedelta(minutes=1))
    assert claimed.attempts == 0


async def test_retry_does_not_break_a_lease_in_flight(store: SqliteOutboxStore) -> None:
    delivery_id = await store.enqueue(make_delivery())
    await store.claim_due(T0, limit=1, lease=timedelta(minutes=5))

    assert await store.retry(delivery_id, T0 + timedelta(seconds=1)) is True

    assert await store.claim_due(T0 + timedelta(seconds=1), limit=1, lease=timedelta(minutes=5)) == []


async def test_retry_unknown_or_sent_is_false(store: SqliteOutboxStore) -> None:
    assert await store.retry(424242, T0) is False
    delivery_id = await store.enqueue(make_delivery())
    await store.mark_sent(delivery_id, T0)
    assert await store.retry(delivery_id, T0) is False
    assert await store.count(DeliveryStatus.SENT) == 1


async def test_list_filters_by_status_newest_first(store: SqliteOutboxStore) -> None:
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


async def test_delete_finished_prunes_old_sent_rows_only(store: SqliteOutboxStore) -> None:
    old_sent, new_sent, old_dead, pending = [await store.enqueue(make_delivery()) for _ in range(4)]
    await store.mark_sent(old_sent, T0)
    await store.mark_sent(new_sent, T0 + timedelta(days=8))
    await store.mark_dead(old_dead, "bad", T0)

    assert await store.delete_finished(T0 + timedelta(days=7)) == 1

    assert {d.id for d in await store.list()} == {new_sent, old_dead, pending}
    # Ids are never reused after pruning.
    assert await store.enqueue(make_delivery()) > pending


# -- failures -------------------------------------------------------------------------


async def test_disk_full_fails_the_whole_batch_and_the_store_recovers(
    store: SqliteOutboxStore,
) -> None:
    db = private_connection(store)
    async with db.execute("PRAGMA page_count") as cur:
        row = await cur.fetchone()
    assert row is not None
    pages = row[0]
    # Room for a few more rows only: the batch fails part-way through.
    await db.execute(f"PRAGMA max_page_count = {pages + 3}")
    big = make_group(note="x" * 3000)

    results = await asyncio.gather(
        *(store.enqueue(make_delivery(group=big, request_id=f"r{i}")) for i in range(20)),
        return_exceptions=True,
    )

    assert all(isinstance(r, StoreError) for r in results), results
    assert "full" in str(results[0])
    assert await store.count(DeliveryStatus.PENDING) == 0, "a failed batch left rows behind"
    commits_before = store.commits

    await db.execute("PRAGMA max_page_count = 1073741823")
    ids = await asyncio.gather(*(store.enqueue(make_delivery(group=big)) for _ in range(20)))

    assert len(set(ids)) == 20
    assert store.commits > commits_before
    assert await store.count(DeliveryStatus.PENDING) == 20


async def test_locked_database_is_a_store_error_and_the_store_recovers(db_path: Path) -> None:
    async with opened(SqliteOutboxStore(db_path, busy_timeout=timedelta(milliseconds=50))) as store:
        kept = await store.enqueue(make_delivery())
        with write_locked(db_path):
            with pytest.raises(StoreError, match="locked"):
                await store.enqueue(make_delivery())
            with pytest.raises(StoreError, match="locked"):
                await store.claim_due(T0, limit=10, lease=timedelta(minutes=1))
            with pytest.raises(StoreError, match="locked"):
                await store.mark_sent(kept, T0)

        new_id = await store.enqueue(make_delivery())
        claimed = await store.claim_due(T0, limit=10, lease=timedelta(minutes=1))
        assert [d.id for d in claimed] == [kept, new_id]


async def test_open_failure_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    store = SqliteOutboxStore(tmp_path / "a-file" / "outbox.db")  # parent is not a directory
    with pytest.raises(StoreError):
        await store.open()


async def test_not_a_database_is_a_store_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an sqlite database, just some junk bytes" * 100)
    with pytest.raises(StoreError):
        await SqliteOutboxStore(db_path).open()


# -- schema -----------------------------------------------------------------------------


async def test_schema_is_created_from_empty(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "outbox.db"
    store = SqliteOutboxStore(path)
    await store.open()
    await store.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}
        assert {
            "id",
            "receiver",
            "channel",
            "recipients",
            "alert_group",
            "request_id",
            "accepted_at",
            "status",
            "attempts",
            "parts_sent",
            "next_attempt_at",
            "lease_until",
            "last_error",
            "finished_at",
        } <= columns
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(deliveries)")}
        assert "deliveries_due" in indexes
    finally:
        conn.close()

    # Reopening an up-to-date database runs no migration again.
    again = SqliteOutboxStore(path)
    await again.open()
    await again.close()


async def test_newer_schema_is_refused(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        conn.close()
    with pytest.raises(StoreError, match="newer"):
        await SqliteOutboxStore(db_path).open()


async def test_connection_is_configured_for_durability(store: SqliteOutboxStore) -> None:
    assert await pragmas(store, "journal_mode", "synchronous", "foreign_keys", "busy_timeout") == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }


async def test_the_same_notification_within_the_dedup_window_is_stored_once(db_path: Path) -> None:
    store = SqliteOutboxStore(db_path, dedup_window=timedelta(minutes=2))
    async with opened(store):

        def delivery(at: datetime, key: str = "k1", receiver: str = "r") -> NewDelivery:
            return NewDelivery(
                receiver=receiver,
                channel="console",
                recipients=Recipients(),
                group=make_group(),
                request_id="q",
                accepted_at=at,
                dedup_key=key,
            )

        first = await store.enqueue(delivery(T0))
        assert await store.enqueue(delivery(T0 + timedelta(seconds=30))) == first
        # Both HA copies in one batch: still one row.
        a, b = await asyncio.gather(store.enqueue(delivery(T0, "k2")), store.enqueue(delivery(T0, "k2")))
        assert a == b
        # Another receiver, another notification, or outside the window: new rows.
        assert await store.enqueue(delivery(T0, receiver="other")) != first
        assert await store.enqueue(delivery(T0, key="k3")) != first
        assert await store.enqueue(delivery(T0 + timedelta(minutes=3))) != first
        assert store.duplicates == 2
        assert len(await store.list()) == 5


async def test_without_a_window_every_delivery_is_stored(db_path: Path) -> None:
    store = SqliteOutboxStore(db_path)
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


# -- rate limits: backlogs, deferral, digests, sends --------------------------


async def test_backlog_is_the_unleased_pending_rows_of_one_receiver_and_recipients(
    store: SqliteOutboxStore,
) -> None:
    ids = [await store.enqueue(make_delivery(T0 + timedelta(seconds=i))) for i in range(4)]
    recipients = make_delivery().recipients
    assert await store.count_backlog("ops", recipients, T0) == 4
    # Leased rows are someone's work in progress, not backlog.
    [leased] = await store.claim_due(T0, limit=1, lease=timedelta(minutes=1))
    assert leased.id == ids[0]
    assert await store.count_backlog("ops", recipients, T0) == 3
    assert await store.count_backlog("ops", Recipients(to_user=("wangwu",)), T0) == 0
    assert await store.count_backlog("dba", recipients, T0) == 0
    # A digest takes the backlog whether due or not (a deferred row included), oldest first.
    await store.defer([ids[3]], T0 + timedelta(minutes=5))
    claimed = await store.claim_backlog("ops", recipients, T0, limit=10, lease=timedelta(minutes=1))
    assert [d.id for d in claimed] == ids[1:]
    assert await store.count_backlog("ops", recipients, T0) == 0


async def test_defer_is_not_an_attempt_and_never_brings_a_row_forward(store: SqliteOutboxStore) -> None:
    delivery_id = await store.enqueue(make_delivery())
    await store.claim_due(T0, limit=1, lease=timedelta(minutes=1))
    await store.defer([delivery_id], T0 + timedelta(seconds=40))
    await store.defer([delivery_id], T0 + timedelta(seconds=20))
    [row] = await store.list()
    assert (row.attempts, row.next_attempt_at, row.last_error) == (0, T0 + timedelta(seconds=40), None)
    assert await store.claim_due(T0 + timedelta(seconds=39), limit=1, lease=timedelta(minutes=1)) == []
    assert len(await store.claim_due(T0 + timedelta(seconds=40), limit=1, lease=timedelta(minutes=1))) == 1


async def test_sends_are_counted_and_forgotten(store: SqliteOutboxStore) -> None:
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


async def test_a_version_2_database_is_migrated_with_its_rows(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    for version in MIGRATIONS[:2]:
        for statement in version:
            conn.execute(statement)
    conn.execute(
        "INSERT INTO deliveries (receiver, channel, recipients, alert_group, request_id, accepted_at,"
        " next_attempt_at) VALUES ('ops', 'app', ?, ?, 'old', 1, 1)",
        (
            json.dumps(make_delivery().recipients.to_dict(), ensure_ascii=False, separators=(",", ":")),
            json.dumps(make_group().to_dict()),
        ),
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    async with opened(SqliteOutboxStore(db_path)) as store:
        assert await store.count_backlog("ops", make_delivery().recipients, T0) == 1
        assert await store.recent_sends(T0 - timedelta(days=1)) == []


async def test_a_stored_digest_resumes_where_it_stopped(store: SqliteOutboxStore) -> None:
    ids = [await store.enqueue(make_delivery()) for _ in range(3)]
    recipients = make_delivery().recipients
    parts = [
        DigestPartRecord("markdown", "part one", 2048, ((7, (ids[0], ids[1])),)),
        DigestPartRecord("markdown", "part two", 2048, ((8, (ids[2],)),)),
    ]
    digest = await store.create_digest("ops", recipients, parts, T0)
    # Its deliveries are no longer backlog for another digest.
    assert await store.count_backlog("ops", recipients, T0) == 0
    assert await store.open_digest("ops", recipients) == digest
    assert await store.open_digest("dba", recipients) is None
    members = await store.claim_digest(digest.id, T0, timedelta(minutes=1))
    assert [d.id for d in members] == ids and all(d.digest_id == digest.id for d in members)
    await store.record_attempt(["k"], T0, part=0, digest_id=digest.id)
    await store.digest_progress(digest.id, 1, [ids[0], ids[1]], T0)
    resumed = await store.open_digest("ops", recipients)
    assert resumed is not None and resumed.parts_sent == 1 and resumed.parts == tuple(parts)
    assert [d.id for d in await store.claim_digest(digest.id, T0, timedelta(minutes=1))] == [ids[2]]
    await store.digest_progress(digest.id, 2, [ids[2]], T0)
    assert await store.open_digest("ops", recipients) is None
    assert await store.count(DeliveryStatus.SENT) == 3
    assert await store.recent_sends(T0 - timedelta(seconds=1)) == [("k", T0)]


async def test_a_value_that_cannot_be_stored_fails_only_its_own_caller(store: SqliteOutboxStore) -> None:
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


async def test_an_accepted_part_restarts_the_backoff_streak(store: SqliteOutboxStore) -> None:
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


async def test_a_recorded_attempt_lasts_until_wecom_answered(store: SqliteOutboxStore) -> None:
    """What a restart finds after a crash between the send and WeCom's answer."""
    ids = [await store.enqueue(make_delivery()) for _ in range(2)]
    recipients = make_delivery().recipients
    digest = await store.create_digest(
        "ops", recipients, [DigestPartRecord("text", "one", 2048, ((7, (ids[1],)),))], T0
    )
    await store.record_attempt(["k"], T0, part=1, delivery_id=ids[0])
    await store.record_attempt(["k"], T0, part=0, digest_id=digest.id)
    rows = {d.id: d for d in await store.list()}
    assert rows[ids[0]].sending_part == 1 and rows[ids[1]].sending_part is None
    stored = await store.open_digest("ops", recipients)
    assert stored is not None and stored.sending_part == 0
    assert await store.recent_sends(T0 - timedelta(seconds=1)) == [("k", T0), ("k", T0)]
    await store.record_progress(ids[0], 2)
    await store.record_attempt([], T0, part=None, digest_id=digest.id)
    assert [d.sending_part for d in await store.list()] == [None, None]
    stored = await store.open_digest("ops", recipients)
    assert stored is not None and stored.sending_part is None
