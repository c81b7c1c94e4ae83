"""The PostgreSQL ``OutboxStore``: one outbox shared by several alertbridge replicas.

Why it looks the way it does:

* **Claims never overlap.** Every claim picks its rows with
  ``FOR UPDATE SKIP LOCKED`` and leases them in the same statement: two
  replicas claiming at once get disjoint rows without waiting on each other.
* **Leases carry an owner** (the replica's name). A replica killed mid-send
  leaves its leases to run out, after which any replica claims the work; a
  replica restarting under the same name frees its own earlier leases at once
  (``release_leases``), never another replica's.
* **HA copies are stored once, webhooks are group-committed**: see ``enqueue``.
* **Nothing accepted is dropped on close.** ``close`` refuses new enqueues
  and commits those already queued before closing the pool.

Digests and the record of sends are in ``digests``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from alertbridge.message import Recipients
from alertbridge.metrics import Metrics
from alertbridge.stores.codec import COLUMNS, decode_rows, dumps, from_us, to_delivery, to_us
from alertbridge.stores.outbox import Delivery, DeliveryStatus, Enqueued, NewDelivery
from alertbridge.stores.postgres.db import Connection, PostgresDatabase
from alertbridge.stores.postgres.digests import MARK_DEAD, PostgresDigestsAndSends, decode_claimed
from alertbridge.stores.postgres.enqueue import PostgresEnqueue
from alertbridge.stores.postgres.leases import LeaseKeeper

logger = logging.getLogger(__name__)

_PRUNE_CHUNK: Final = 1000

# A claimed row was taken over when it still carried a lease (so one that had
# run out: the claim only picks those) of another replica: released, sent or
# rescheduled rows carry none. $2 is the claiming replica.
_TAKEN_OVER: Final = "(was_until IS NOT NULL AND was_owner IS DISTINCT FROM $2) AS taken_over"


class PostgresOutboxStore(PostgresDigestsAndSends):
    """``OutboxStore`` on a PostgreSQL database shared by replicas.

    ``replica`` names this replica in the leases it takes (its pod name, say);
    ``dedup_window`` as for SQLite: 0 stores every copy. ``metrics`` counts group
    commits and lease takeovers (``alertbridge_outbox_lease_takeovers_total``).
    """

    def __init__(
        self,
        database: PostgresDatabase,
        *,
        replica: str,
        dedup_window: timedelta = timedelta(0),
        batch_limit: int = 512,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = database
        self.replica = replica
        self._metrics = metrics
        self._leases = LeaseKeeper(database, replica)
        self._writer = PostgresEnqueue(
            database, dedup_window=dedup_window, batch_limit=batch_limit, metrics=metrics
        )
        self._open = False

    @property
    def database(self) -> PostgresDatabase:
        """For the state store of the same replica to share (one pool)."""
        return self._db

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect (or join the replica's open pool) and migrate; start the writer."""
        if self._open:
            return
        await self._db.acquire()
        self._writer.start()
        self._leases.start()
        self._open = True

    async def close(self) -> None:
        """Commit every enqueue already accepted, then let go of the pool."""
        if not self._open:
            return
        self._open = False
        await self._leases.stop()
        await self._writer.stop()
        await self._db.release()

    async def release_leases(self) -> int:
        """Free the leases this replica's earlier run left; other replicas' stay theirs."""
        return await self._db.execute(
            "release leases",
            "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL AND lease_owner = $1",
            self.replica,
        )

    # -- webhook side ----------------------------------------------------------

    async def enqueue(self, delivery: NewDelivery) -> Enqueued:
        """Durably store ``delivery`` (group-committed), or return the id of the copy
        stored within the dedup window (see ``enqueue``)."""
        return await self._writer.enqueue(delivery)

    # -- dispatcher side ----------------------------------------------------

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        """Lease up to ``limit`` due pending deliveries, oldest first, skipping rows another claim holds.

        Open stored digests with a due delivery come first and whole (see
        ``OutboxStore.claim_due``): the claim locks each digest's row, skipping
        digests another claim holds, and leases all its free pending
        deliveries. Other claims never pick a delivery of an open digest they
        have not locked, so concurrent claims cannot split one digest.
        """
        if limit <= 0:
            return []
        now_us = to_us(now)
        async with self._db.transaction("claim_due") as conn:
            digests = [
                int(row[0])
                for row in await conn.fetch(
                    """
                    SELECT g.id FROM digests AS g
                    WHERE g.parts_sent < g.part_count
                      AND EXISTS (SELECT 1 FROM deliveries AS d WHERE d.digest_id = g.id
                                  AND d.status = 'pending' AND d.next_attempt_at <= $1)
                      AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.digest_id = g.id
                                      AND d.status = 'pending' AND d.lease_until > $1)
                    ORDER BY g.id
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                    """,
                    now_us,
                    limit,
                )
            ]
            rows: list[asyncpg.Record] = []
            if digests:
                rows += await self._lease_picked(
                    conn,
                    """
                    WHERE status = 'pending' AND digest_id = ANY($3::bigint[])
                      AND (lease_until IS NULL OR lease_until <= $4)
                    """,
                    now,
                    lease,
                    digests,
                    now_us,
                )
            if len(rows) < limit:
                rows += await self._lease_picked(
                    conn,
                    """
                    WHERE status = 'pending' AND next_attempt_at <= $3
                      AND (lease_until IS NULL OR lease_until <= $3)
                      AND (digest_id IS NULL OR NOT EXISTS (SELECT 1 FROM digests AS g
                           WHERE g.id = digest_id AND g.parts_sent < g.part_count))
                    ORDER BY next_attempt_at, id
                    LIMIT $4
                    """,
                    now,
                    lease,
                    now_us,
                    limit - len(rows),
                )
            claimed = await decode_claimed(conn, rows, now_us)
        self._claimed(rows, claimed, lease)
        claimed.sort(key=lambda d: (d.next_attempt_at, d.id))
        return claimed

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending delivery can next be claimed (a leased one: when its lease ends)."""
        value = await self._db.fetchval(
            "next_due_at",
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, next_attempt_at)))"
            " FROM deliveries WHERE status = 'pending'",
        )
        return from_us(value) if value is not None else None

    async def count_backlog(self, receiver: str, recipients: Recipients) -> int:
        """Pending deliveries of ``receiver`` to exactly ``recipients``, whoever holds them."""
        value = await self._db.fetchval(
            "count_backlog",
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND receiver = $1 AND recipients = $2",
            receiver,
            dumps(recipients.to_dict()),
        )
        return int(value)

    async def claim_backlog(
        self, receiver: str, recipients: Recipients, now: datetime, limit: int, lease: timedelta
    ) -> list[Delivery]:
        """Lease up to ``limit`` of that backlog, oldest accepted first, due or
        not, leaving deliveries a send has started and one-offs (they go out as themselves)."""
        if limit <= 0:
            return []
        now_us = to_us(now)
        async with self._db.transaction("claim_backlog") as conn:
            rows = await self._lease_picked(
                conn,
                """
                WHERE status = 'pending' AND receiver = $3 AND recipients = $4 AND digest_id IS NULL
                  AND parts_sent = 0 AND sending_part IS NULL AND oneoff IS NULL
                  AND (lease_until IS NULL OR lease_until <= $5)
                ORDER BY accepted_at, id
                LIMIT $6
                """,
                now,
                lease,
                receiver,
                dumps(recipients.to_dict()),
                now_us,
                limit,
            )
            claimed = await decode_claimed(conn, rows, now_us)
        self._claimed(rows, claimed, lease)
        claimed.sort(key=lambda d: (d.accepted_at, d.id))
        return claimed

    async def _lease_picked(
        self, conn: Connection, pick: str, now: datetime, lease: timedelta, *args: object
    ) -> list[asyncpg.Record]:
        """Lease to this replica the deliveries ``pick`` (WHERE … ORDER BY … LIMIT,
        its parameters from $3 on) selects, skipping rows another claim holds."""
        return list(
            await conn.fetch(
                f"""
                WITH picked AS (
                    SELECT id AS picked_id, lease_owner AS was_owner, lease_until AS was_until
                    FROM deliveries {pick}
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE deliveries SET lease_until = $1, lease_owner = $2
                FROM picked WHERE id = picked_id
                RETURNING {COLUMNS}, {_TAKEN_OVER}
                """,
                to_us(now + lease),
                self.replica,
                *args,
            )
        )

    def _claimed(self, rows: Sequence[asyncpg.Record], claimed: Sequence[Delivery], lease: timedelta) -> None:
        """After a claim committed: count takeovers of other replicas' expired
        leases and keep the new leases alive."""
        self._count_takeovers(rows)
        self._leases.track((d.id for d in claimed), lease)

    def _count_takeovers(self, rows: Sequence[asyncpg.Record]) -> None:
        """Count the claimed rows whose expired lease was another replica's."""
        self._note_takeovers(sum(1 for row in rows if row["taken_over"]))

    async def record_progress(self, delivery_id: int, parts_sent: int) -> None:
        """Parts WeCom accepted are never resent; an accepted part restarts the backoff."""
        await self._db.execute(
            "record_progress",
            "UPDATE deliveries SET parts_sent = $1, failures_since_progress = 0, sending_part = NULL,"
            " sending_at = NULL WHERE id = $2",
            parts_sent,
            delivery_id,
        )

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        await self._db.execute(
            "mark_sent",
            "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, finished_at = $1,"
            " lease_until = NULL, sending_part = NULL, sending_at = NULL WHERE id = $2",
            to_us(now),
            delivery_id,
        )

    async def defer(self, delivery_ids: Sequence[int], until: datetime) -> None:
        """Hold deliveries back until ``until`` (rate limits): no attempt counted, never brought forward."""
        await self._db.execute(
            "defer",
            "UPDATE deliveries SET next_attempt_at = GREATEST(next_attempt_at, $1), lease_until = NULL"
            " WHERE id = ANY($2::bigint[]) AND status = 'pending'",
            to_us(until),
            list(delivery_ids),
        )

    async def reschedule(self, delivery_id: int, next_attempt_at: datetime, error: str) -> None:
        await self._db.execute(
            "reschedule",
            "UPDATE deliveries SET attempts = attempts + 1,"
            " failures_since_progress = failures_since_progress + 1, next_attempt_at = $1,"
            " last_error = $2, lease_until = NULL WHERE id = $3",
            to_us(next_attempt_at),
            error,
            delivery_id,
        )

    async def mark_dead(self, delivery_id: int, reason: str, now: datetime) -> None:
        await self._db.execute("mark_dead", MARK_DEAD, reason, to_us(now), delivery_id)

    # -- operator side -------------------------------------------------------

    async def list(self, status: DeliveryStatus | None = None, limit: int = 100) -> list[Delivery]:
        """Newest first; a row this version cannot decode is logged and left out."""
        if status is None:
            rows = await self._db.fetch(
                "list", f"SELECT {COLUMNS} FROM deliveries ORDER BY id DESC LIMIT $1", limit
            )
        else:
            rows = await self._db.fetch(
                "list",
                f"SELECT {COLUMNS} FROM deliveries WHERE status = $1 ORDER BY id DESC LIMIT $2",
                DeliveryStatus(status).value,
                limit,
            )
        return decode_rows(rows, to_delivery, "list")

    async def get(self, delivery_id: int) -> Delivery | None:
        row = await self._db.fetchrow("get", f"SELECT {COLUMNS} FROM deliveries WHERE id = $1", delivery_id)
        rows = decode_rows([row] if row is not None else [], to_delivery, "get")
        return rows[0] if rows else None

    async def retry(self, delivery_id: int, now: datetime) -> bool:
        """Make a dead or pending delivery due ``now`` with zero attempts (a running lease is kept)."""
        now_us = to_us(now)
        changed = await self._db.execute(
            "retry",
            "UPDATE deliveries SET status = 'pending', attempts = 0, failures_since_progress = 0,"
            " next_attempt_at = $1, finished_at = NULL,"
            " lease_until = CASE WHEN lease_until > $1 THEN lease_until END"
            " WHERE id = $2 AND status IN ('pending', 'dead')",
            now_us,
            delivery_id,
        )
        return changed > 0

    async def probe(self, now: datetime) -> None:
        """Commit a one-row write: raises ``StoreError`` when the database cannot take writes."""
        await self._db.execute(
            "probe",
            "INSERT INTO probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            to_us(now),
        )

    async def oldest_pending(self) -> datetime | None:
        value = await self._db.fetchval(
            "oldest_pending", "SELECT MIN(accepted_at) FROM deliveries WHERE status = 'pending'"
        )
        return from_us(value) if value is not None else None

    async def count(self, status: DeliveryStatus) -> int:
        value = await self._db.fetchval(
            "count", "SELECT COUNT(*) FROM deliveries WHERE status = $1", DeliveryStatus(status).value
        )
        return int(value)

    async def delete_finished(self, older_than: datetime) -> int:
        """Prune sent deliveries finished before ``older_than`` (in chunks), finished digests and
        dedup keys as old; dead letters stay for the operator."""
        cutoff = to_us(older_than)
        await self._db.execute(
            "delete_finished",
            "DELETE FROM digests WHERE parts_sent >= part_count AND created_at < $1",
            cutoff,
        )
        await self._db.execute("delete_finished", "DELETE FROM dedup_keys WHERE accepted_at < $1", cutoff)
        total = 0
        while True:
            deleted = await self._db.execute(
                "delete_finished",
                "DELETE FROM deliveries WHERE id = ANY(ARRAY(SELECT id FROM deliveries"
                " WHERE status = 'sent' AND finished_at < $1 LIMIT $2))",
                cutoff,
                _PRUNE_CHUNK,
            )
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total
