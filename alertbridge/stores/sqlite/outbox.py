"""The SQLite outbox: the default, single-process ``OutboxStore``.

Why it looks the way it does:

* **Durability first.** The webhook handler answers 200 only after
  ``enqueue`` returns, and Alertmanager will not resend an acknowledged
  notification. So every commit is fsynced (WAL + ``synchronous=FULL``): an
  acknowledged alert survives a power cut.
* **Group commit.** An fsync costs milliseconds; a burst of webhooks must not
  pay one each. ``enqueue`` hands its row to a single writer task, which
  inserts everything queued at that moment in one transaction and commits
  once. Either the whole batch is stored or none of it, and every caller of
  that batch learns which.
* **One connection, one lock.** aiosqlite runs every call on one thread, but
  awaits between statements let other coroutines slip their statements into
  an open transaction. All transactions and reads therefore run under one
  ``asyncio.Lock``, so a claim can never land inside (and be rolled back with)
  the writer's batch.
* **Errors are StoreErrors.** Any ``sqlite3.Error``/``OSError`` (locked, disk
  full, read-only) becomes ``StoreError`` with a short reason; the failed
  transaction is rolled back and the next operation simply tries again.

Timestamps are stored as integer microseconds since the Unix epoch (UTC):
exact round trips, cheap comparisons, and index-friendly. In the ``sqlite3``
shell, ``datetime(col / 1e6, 'unixepoch')`` shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import aiosqlite

from alertbridge.message import Recipients
from alertbridge.metrics import Metrics
from alertbridge.stores.codec import COLUMNS, decode_rows, dumps, from_us, to_delivery, to_us
from alertbridge.stores.outbox import Delivery, DeliveryStatus, Enqueued, NewDelivery
from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.sqlite.digests import SqliteDigestsAndSends
from alertbridge.stores.sqlite.group_commit import GroupCommitWriter
from alertbridge.stores.sqlite.outbox_schema import MARK_DEAD, decode_claimed, migrate

logger = logging.getLogger(__name__)

# Rows deleted per transaction when pruning, so a large backlog of sent rows
# never holds the lock long enough to stall webhook commits.
_PRUNE_CHUNK: Final = 1000


# Leases up to LIMIT due rows and their digests' pending siblings:
# (now, now, limit, lease_until, now). The siblings are found through
# deliveries_digest; ``+status`` keeps the planner off the status indexes,
# which would walk every pending row, so a claim costs the same under any
# backlog (tests/test_store_sqlite.py reads the plan).
CLAIM_DUE: Final = f"""
    WITH picked AS (
        SELECT id, digest_id FROM deliveries
        WHERE status = 'pending' AND next_attempt_at <= ?
          AND (lease_until IS NULL OR lease_until <= ?)
        ORDER BY next_attempt_at, id
        LIMIT ?
    )
    UPDATE deliveries SET lease_until = ?
    WHERE id IN (
        SELECT id FROM picked
        UNION
        SELECT id FROM deliveries
        WHERE digest_id IN (SELECT digest_id FROM picked) AND digest_id IS NOT NULL
          AND +status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)
    )
    RETURNING {COLUMNS}
"""


class SqliteOutboxStore(SqliteDigestsAndSends):
    """``OutboxStore`` on one SQLite file, for a single alertbridge process.

    Leases exist so a slow send is not claimed twice, but with one serving
    process any lease found when it starts belongs to a run that crashed, so
    the server calls ``release_leases()`` at start-up rather than waiting for
    them to expire. CLI tools (``outbox list``) open the same file without
    releasing anything. Do not point two serving processes at the same file.

    ``metrics`` (the server's) counts the committed enqueue batches (group
    commits), so /metrics shows how well bursts are being batched.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_limit: int = 512,
        busy_timeout: timedelta = timedelta(seconds=5),
        dedup_window: timedelta = timedelta(0),
        metrics: Metrics | None = None,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._connection = SqliteConnection(self.path, busy_timeout, foreign_keys=True)
        self._writer = GroupCommitWriter(
            self._connection, self.path, batch_limit=batch_limit, dedup_window=dedup_window, metrics=metrics
        )

    @property
    def connection(self) -> SqliteConnection:
        """For the state store in the same file to share (see SqliteStateStore)."""
        return self._connection

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect, configure durability, migrate, start the writer."""
        if self._connection.is_open:
            return
        await self._connection.open(self._migrate)
        self._writer.start()

    async def release_leases(self) -> int:
        """Free every lease; only for a serving process at start-up (see class doc)."""
        return await self._connection.execute(
            "release leases",
            "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL",
            durable=False,
        )

    async def close(self) -> None:
        """Commit every enqueue already accepted, then close the connection."""
        if not self._connection.is_open:
            return
        await self._writer.stop()
        await self._connection.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await migrate(db, self.path)

    async def enqueue(self, delivery: NewDelivery) -> Enqueued:
        """Durably store ``delivery`` (group-committed with concurrent callers, see ``group_commit``)."""
        return await self._writer.enqueue(delivery)

    # -- dispatcher side ----------------------------------------------------

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        """Lease up to ``limit`` due pending deliveries, oldest first.

        One ``UPDATE … RETURNING`` picks and leases the rows atomically, so
        two claimers (even on two connections) never get the same row. A
        picked row of a stored digest brings the digest's other pending rows
        (see ``OutboxStore.claim_due``). A row this version cannot decode is
        dead-lettered in the same transaction instead of blocking the queue forever.
        """
        if limit <= 0:
            return []
        now_us = to_us(now)
        lease_us = to_us(now + lease)
        async with self._connection.session("claim_due", write=True, durable=False) as db:
            rows = await db.execute_fetchall(
                CLAIM_DUE,
                (now_us, now_us, limit, lease_us, now_us),
            )
            claimed = await decode_claimed(db, rows, now_us)
        # RETURNING order is unspecified; the contract is oldest first.
        claimed.sort(key=lambda d: (d.next_attempt_at, d.id))
        return claimed

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending delivery can next be claimed.

        For an unleased row that is its ``next_attempt_at``; for a leased one
        the later of that and its lease expiry, so a dispatcher sleeping until
        this time also wakes for a lease that runs out.
        """
        rows = await self._connection.fetchall(
            "next_due_at",
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, next_attempt_at)))"
            " FROM deliveries WHERE status = 'pending'",
        )
        value = next(iter(rows))[0]
        return from_us(value) if value is not None else None

    async def count_backlog(self, receiver: str, recipients: Recipients) -> int:
        """Pending deliveries of ``receiver`` to exactly ``recipients``, leased or not, in a digest or not."""
        row = await self._connection.fetchone(
            "count_backlog",
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND receiver = ? AND recipients = ?",
            (receiver, dumps(recipients.to_dict())),
        )
        return int(row[0]) if row is not None else 0

    async def claim_backlog(
        self, receiver: str, recipients: Recipients, now: datetime, limit: int, lease: timedelta
    ) -> list[Delivery]:
        """Lease up to ``limit`` of that backlog, oldest first, due or not (they go
        out in a digest), leaving deliveries a send has started."""
        if limit <= 0:
            return []
        now_us = to_us(now)
        async with self._connection.session("claim_backlog", write=True, durable=False) as db:
            rows = await db.execute_fetchall(
                f"""
                UPDATE deliveries SET lease_until = ?
                WHERE id IN (
                    SELECT id FROM deliveries
                    WHERE status = 'pending' AND receiver = ? AND recipients = ? AND digest_id IS NULL
                      AND parts_sent = 0 AND sending_part IS NULL AND oneoff IS NULL
                      AND (lease_until IS NULL OR lease_until <= ?)
                    ORDER BY accepted_at, id
                    LIMIT ?
                )
                RETURNING {COLUMNS}
                """,
                (to_us(now + lease), receiver, dumps(recipients.to_dict()), now_us, limit),
            )
            claimed = await decode_claimed(db, rows, now_us)
        claimed.sort(key=lambda d: (d.accepted_at, d.id))
        return claimed

    async def record_progress(self, delivery_id: int, parts_sent: int) -> None:
        """Remember how many parts WeCom accepted, so a retry never resends them
        (and restart the backoff: WeCom is reachable)."""
        async with self._connection.session("record_progress", write=True, durable=False) as db:
            await db.execute(
                "UPDATE deliveries SET parts_sent = ?, failures_since_progress = 0, sending_part = NULL, sending_at = NULL"
                " WHERE id = ?",
                (parts_sent, delivery_id),
            )

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        """Finish one delivery."""
        await self._connection.execute(
            "mark_sent",
            "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, finished_at = ?,"
            " lease_until = NULL, sending_part = NULL, sending_at = NULL WHERE id = ?",
            (to_us(now), delivery_id),
            durable=False,
        )

    async def defer(self, delivery_ids: Sequence[int], until: datetime) -> None:
        """Hold deliveries back until ``until`` for WeCom's rate limits: not a failure, no attempt counted."""
        async with self._connection.session("defer", write=True, durable=False) as db:
            await db.executemany(
                "UPDATE deliveries SET next_attempt_at = MAX(next_attempt_at, ?), lease_until = NULL"
                " WHERE id = ? AND status = 'pending'",
                [(to_us(until), delivery_id) for delivery_id in delivery_ids],
            )

    async def reschedule(self, delivery_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed attempt and release the lease until ``next_attempt_at``."""
        await self._connection.execute(
            "reschedule",
            "UPDATE deliveries SET attempts = attempts + 1,"
            " failures_since_progress = failures_since_progress + 1, next_attempt_at = ?,"
            " last_error = ?, lease_until = NULL WHERE id = ?",
            (to_us(next_attempt_at), error, delivery_id),
            durable=False,
        )

    async def mark_dead(self, delivery_id: int, reason: str, now: datetime) -> None:
        await self._connection.execute(
            "mark_dead", MARK_DEAD, (reason, to_us(now), delivery_id), durable=False
        )

    # -- operator side -------------------------------------------------------

    async def list(self, status: DeliveryStatus | None = None, limit: int = 100) -> list[Delivery]:
        """Newest first (by id, i.e. commit order).

        A row this version cannot decode is logged and left out rather than
        making the whole listing fail.
        """
        if status is None:
            rows = await self._connection.fetchall(
                "list", f"SELECT {COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = await self._connection.fetchall(
                "list",
                f"SELECT {COLUMNS} FROM deliveries WHERE status = ? ORDER BY id DESC LIMIT ?",
                (DeliveryStatus(status).value, limit),
            )
        return decode_rows(rows, to_delivery, "list")

    async def get(self, delivery_id: int) -> Delivery | None:
        """One delivery by id, for the CLI (``outbox retry`` says what became of it)."""
        row = await self._connection.fetchone(
            "get", f"SELECT {COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
        )
        rows = decode_rows([row] if row is not None else [], to_delivery, "get")
        return rows[0] if rows else None

    async def retry(self, delivery_id: int, now: datetime) -> bool:
        """Make a dead or pending delivery due ``now`` with zero attempts.

        ``last_error`` and ``parts_sent`` are kept: the error is history for
        the operator, and parts WeCom already accepted must not be sent again.
        A lease still running is kept too, so an attempt in flight is not
        claimed a second time. Returns False for an unknown id — and for a
        sent delivery, which there is nothing to retry for.
        """
        now_us = to_us(now)
        changed = await self._connection.execute(
            "retry",
            "UPDATE deliveries SET status = 'pending', attempts = 0, failures_since_progress = 0,"
            " next_attempt_at = ?,"
            " finished_at = NULL,"
            " lease_until = CASE WHEN lease_until > ? THEN lease_until END"
            " WHERE id = ? AND status IN ('pending', 'dead')",
            (now_us, now_us, delivery_id),
        )
        return changed > 0

    async def probe(self, now: datetime) -> None:
        """Commit a one-row write: raises ``StoreError`` when the store cannot take writes."""
        await self._connection.execute(
            "probe", "INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (to_us(now),), durable=False
        )

    async def oldest_pending(self) -> datetime | None:
        """When the oldest pending delivery was accepted; None when nothing is pending."""
        row = await self._connection.fetchone(
            "oldest_pending", "SELECT MIN(accepted_at) FROM deliveries WHERE status = 'pending'"
        )
        return from_us(row[0]) if row is not None and row[0] is not None else None

    async def count(self, status: DeliveryStatus) -> int:
        rows = await self._connection.fetchall(
            "count", "SELECT COUNT(*) FROM deliveries WHERE status = ?", (DeliveryStatus(status).value,)
        )
        return int(next(iter(rows))[0])

    async def delete_finished(self, older_than: datetime) -> int:
        """Prune sent deliveries finished before ``older_than``; dead ones stay.

        Dead letters are kept for the operator to inspect and retry. Deletes
        run in chunks, each its own transaction, so webhook commits queued
        behind the lock wait for one chunk at most.
        """
        cutoff = to_us(older_than)
        await self._connection.execute(
            "delete_finished",
            "DELETE FROM digests WHERE parts_sent >= part_count AND created_at < ?",
            (cutoff,),
        )
        total = 0
        while True:
            deleted = await self._connection.execute(
                "delete_finished",
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
                " WHERE status = 'sent' AND finished_at < ? LIMIT ?)",
                (cutoff, _PRUNE_CHUNK),
            )
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total
