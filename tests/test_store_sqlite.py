"""SqliteOutboxStore against a real SQLite file.

Each test pins one promise the dispatcher or the webhook handler relies on:
nothing acknowledged is lost, nothing is claimed twice, and a failing disk
turns into StoreError instead of a silently missing alert or a wedged store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.metrics import Metrics
from alertbridge.stores import DeliveryStatus, NewDelivery
from alertbridge.stores.codec import from_us as _from_us
from alertbridge.stores.codec import to_us as _to_us
from alertbridge.stores.sqlite.outbox import CLAIM_DUE, SqliteOutboxStore
from alertbridge.stores.sqlite.outbox_schema import MIGRATIONS, SCHEMA_VERSION
from alertbridge.testing.store_contract import T0, make_delivery, make_group, opened
from tests.sqlite_probes import pragmas, private_connection, write_locked


def group_commits(metrics: Metrics) -> float:
    """Committed enqueue batches, as /metrics exports them."""
    return metrics.registry.get_sample_value("alertbridge_outbox_group_commits_total") or 0.0


# -- round trip ---------------------------------------------------------------


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_timestamp_encoding_is_exact(value: datetime) -> None:
    assert _from_us(_to_us(value)) == value


# -- group commit ---------------------------------------------------------------


async def test_concurrent_enqueues_share_commits(outbox: SqliteOutboxStore, metrics: Metrics) -> None:
    ids = await asyncio.gather(*(outbox.enqueue(make_delivery(request_id=f"req-{i}")) for i in range(200)))

    assert len(set(ids)) == 200
    commits = group_commits(metrics)
    assert commits <= 10, f"{commits} commits for 200 enqueues: no group commit"
    assert await outbox.count(DeliveryStatus.PENDING) == 200
    # Every caller got the id of its own row.
    by_id = {d.id: d.request_id for d in await outbox.list(limit=500)}
    assert [by_id[i] for i in ids] == [f"req-{i}" for i in range(200)]


async def test_batch_limit_caps_a_transaction(db_path: Path, metrics: Metrics) -> None:
    async with opened(SqliteOutboxStore(db_path, batch_limit=16, metrics=metrics)) as outbox:
        ids = await asyncio.gather(*(outbox.enqueue(make_delivery()) for i in range(64)))
        assert len(set(ids)) == 64
        assert group_commits(metrics) >= 4


# -- durability -------------------------------------------------------------------


# -- claiming ---------------------------------------------------------------------


async def test_a_claim_reads_only_what_it_claims_under_any_backlog(db_path: Path) -> None:
    """The claim reaches the digest siblings by index: with ``OR digest_id IN …``
    it walked every pending row, milliseconds under the ingest bench's backlog."""
    async with opened(SqliteOutboxStore(db_path)):
        pass
    conn = sqlite3.connect(db_path)
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {CLAIM_DUE}", (0, 0, 1, 0, 0))]
    finally:
        conn.close()
    assert not [step for step in plan if step.startswith("SCAN deliveries")], plan
    assert "SEARCH deliveries USING INDEX deliveries_digest (digest_id=?)" in plan
    assert not [step for step in plan if "deliveries_finished" in step or "deliveries_status_id" in step], (
        plan
    )


async def test_pending_rows_stay_out_of_the_pruning_index(db_path: Path) -> None:
    """Only finished rows are pruned, so only they are in deliveries_finished:
    a new webhook's row writes one index less."""
    async with opened(SqliteOutboxStore(db_path)) as outbox:
        first, second = await outbox.enqueue(make_delivery()), await outbox.enqueue(make_delivery())
        await outbox.mark_sent(first, T0)
    conn = sqlite3.connect(db_path)
    try:
        indexed = conn.execute(
            "SELECT id FROM deliveries INDEXED BY deliveries_finished WHERE finished_at > 0"
        )
        assert [row[0] for row in indexed] == [first]
        assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 2
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM deliveries WHERE status = 'sent' AND finished_at < ? LIMIT ?",
            (0, 1),
        ).fetchall()
        assert "deliveries_finished" in plan[0][3]
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'deliveries_finished'").fetchone()
        assert sql.endswith("WHERE finished_at IS NOT NULL"), sql
    finally:
        conn.close()
    assert second != first


# -- outcomes -----------------------------------------------------------------------


# -- failures -------------------------------------------------------------------------


async def test_disk_full_fails_the_whole_batch_and_the_store_recovers(
    outbox: SqliteOutboxStore, metrics: Metrics
) -> None:
    db = private_connection(outbox)
    async with db.execute("PRAGMA page_count") as cur:
        row = await cur.fetchone()
    assert row is not None
    pages = row[0]
    # Room for a few more rows only: the batch fails part-way through.
    await db.execute(f"PRAGMA max_page_count = {pages + 3}")
    big = make_group(note="x" * 3000)

    results = await asyncio.gather(
        *(outbox.enqueue(make_delivery(group=big, request_id=f"r{i}")) for i in range(20)),
        return_exceptions=True,
    )

    assert all(isinstance(r, StoreError) for r in results), results
    assert "full" in str(results[0])
    assert await outbox.count(DeliveryStatus.PENDING) == 0, "a failed batch left rows behind"
    commits_before = group_commits(metrics)

    await db.execute("PRAGMA max_page_count = 1073741823")
    ids = await asyncio.gather(*(outbox.enqueue(make_delivery(group=big)) for _ in range(20)))

    assert len(set(ids)) == 20
    assert group_commits(metrics) > commits_before
    assert await outbox.count(DeliveryStatus.PENDING) == 20


async def test_locked_database_is_a_store_error_and_the_store_recovers(db_path: Path) -> None:
    async with opened(SqliteOutboxStore(db_path, busy_timeout=timedelta(milliseconds=50))) as outbox:
        kept = await outbox.enqueue(make_delivery())
        with write_locked(db_path):
            with pytest.raises(StoreError, match="locked"):
                await outbox.enqueue(make_delivery())
            with pytest.raises(StoreError, match="locked"):
                await outbox.claim_due(T0, limit=10, lease=timedelta(minutes=1))
            with pytest.raises(StoreError, match="locked"):
                await outbox.mark_sent(kept, T0)

        new_id = await outbox.enqueue(make_delivery())
        claimed = await outbox.claim_due(T0, limit=10, lease=timedelta(minutes=1))
        assert [d.id for d in claimed] == [kept, new_id]


async def test_open_failure_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    outbox = SqliteOutboxStore(tmp_path / "a-file" / "outbox.db")  # parent is not a directory
    with pytest.raises(StoreError):
        await outbox.open()


async def test_not_a_database_is_a_store_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an sqlite database, just some junk bytes" * 100)
    with pytest.raises(StoreError):
        await SqliteOutboxStore(db_path).open()


# -- schema -----------------------------------------------------------------------------


async def test_schema_is_created_from_empty(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "outbox.db"
    outbox = SqliteOutboxStore(path)
    await outbox.open()
    await outbox.close()

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


async def test_connection_is_configured_for_durability(outbox: SqliteOutboxStore) -> None:
    assert await pragmas(
        outbox,
        "journal_mode",
        "synchronous",
        "foreign_keys",
        "busy_timeout",
        "temp_store",
        "wal_autocheckpoint",
    ) == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 5000,
        # 2 = MEMORY: a statement's scratch b-tree never becomes a file to create and unlink.
        "temp_store": 2,
        "wal_autocheckpoint": 8000,
    }


async def test_the_same_notification_within_the_dedup_window_is_stored_once(db_path: Path) -> None:
    outbox = SqliteOutboxStore(db_path, dedup_window=timedelta(minutes=2))
    async with opened(outbox):

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

        first = await outbox.enqueue(delivery(T0))
        again = await outbox.enqueue(delivery(T0 + timedelta(seconds=30)))
        assert again == first
        # Both HA copies in one batch: still one row.
        a, b = await asyncio.gather(outbox.enqueue(delivery(T0, "k2")), outbox.enqueue(delivery(T0, "k2")))
        assert a == b
        # Another receiver, another notification, or outside the window: new rows.
        others = [
            await outbox.enqueue(delivery(T0, receiver="other")),
            await outbox.enqueue(delivery(T0, key="k3")),
            await outbox.enqueue(delivery(T0 + timedelta(minutes=3))),
        ]
        assert all(other != first for other in others)
        # Exactly the two copies were answered as duplicates (the webhook handler counts those).
        enqueued = [first, again, a, b, *others]
        assert [e.duplicate for e in enqueued].count(True) == 2
        assert len(await outbox.list()) == 5


# -- rate limits: backlogs, deferral, digests, sends --------------------------


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
    async with opened(SqliteOutboxStore(db_path)) as outbox:
        assert await outbox.count_backlog("ops", make_delivery().recipients) == 1
        assert await outbox.recent_sends(T0 - timedelta(days=1)) == []
