"""The PostgreSQL outbox's stored digests and its record of sends against rate limits.

A digest is rendered once and kept until every part is sent, so a crash
between WeCom's answer and our bookkeeping re-sends the very same bytes. With
several replicas, one replica at a time composes and sends a target's
digests (``lock_target``), and ``claim_digest`` locks the digest's row and
gives nothing while another replica holds a live lease on its deliveries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.metrics import Metrics
from alertbridge.stores.codec import (
    COLUMNS,
    DECODE_ERRORS,
    Undecodable,
    dumps,
    from_us,
    part_from_json,
    part_to_json,
    to_delivery,
    to_us,
)
from alertbridge.stores.outbox import Delivery, DigestClaim, DigestClaimStatus, DigestPartRecord, StoredDigest
from alertbridge.stores.postgres.db import Connection, PostgresDatabase
from alertbridge.stores.postgres.leases import LeaseKeeper
from alertbridge.stores.postgres.reservations import PostgresReservations
from alertbridge.stores.postgres.target_locks import PostgresTargetLocks

logger = logging.getLogger(__name__)

# Dead-letters one delivery: ($1 last_error, $2 finished_at, $3 id). The
# attempt that ended it counts, as the one that sent a delivery does.
MARK_DEAD: Final = (
    "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_error = $1, finished_at = $2,"
    " lease_until = NULL WHERE id = $3"
)


async def decode_claimed(conn: Connection, rows: Iterable[asyncpg.Record], now_us: int) -> list[Delivery]:
    """The claimed rows as deliveries; a row this version cannot decode is
    dead-lettered in the claim's transaction instead of blocking the queue forever."""
    claimed: list[Delivery] = []
    for row in rows:
        try:
            claimed.append(to_delivery(row))
        except Undecodable as exc:
            logger.error("dead-lettering: %s", exc)
            await conn.execute(MARK_DEAD, str(exc), now_us, row[0])
    return claimed


class PostgresDigestsAndSends(PostgresReservations, PostgresTargetLocks):
    """The digest and send-count half of ``PostgresOutboxStore`` (a mixin on its database)."""

    _db: PostgresDatabase
    _metrics: Metrics | None
    _leases: LeaseKeeper
    replica: str

    def _note_takeovers(self, taken: int) -> None:
        """``taken`` claimed deliveries had an expired lease of another replica."""
        if taken:
            logger.info("outbox_lease_takeover deliveries=%d replica=%s", taken, self.replica)
            if self._metrics is not None:
                self._metrics.lease_takeovers.inc(taken)

    async def create_digest(
        self, receiver: str, recipients: Recipients, parts: Sequence[DigestPartRecord], now: datetime
    ) -> StoredDigest:
        """Store a digest and tie its deliveries to it, in one transaction."""
        members = [i for part in parts for _, ids in part.finished for i in ids]
        async with self._db.transaction("create_digest") as conn:
            digest_id = int(
                await conn.fetchval(
                    "INSERT INTO digests (receiver, recipients, parts, part_count, created_at)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    receiver,
                    dumps(recipients.to_dict()),
                    dumps([part_to_json(part) for part in parts]),
                    len(parts),
                    to_us(now),
                )
            )
            await conn.execute(
                "UPDATE deliveries SET digest_id = $1 WHERE id = ANY($2::bigint[])", digest_id, members
            )
        return StoredDigest(id=digest_id, receiver=receiver, parts=tuple(parts), parts_sent=0)

    async def open_digest(self, receiver: str, recipients: Recipients) -> StoredDigest | None:
        """The oldest digest to this target with parts still to send."""
        row = await self._db.fetchrow(
            "open_digest",
            "SELECT id, receiver, parts, parts_sent, sending_part, sending_at FROM digests"
            " WHERE receiver = $1 AND recipients = $2 AND parts_sent < part_count ORDER BY id LIMIT 1",
            receiver,
            dumps(recipients.to_dict()),
        )
        if row is None:
            return None
        try:
            parts = tuple(part_from_json(part) for part in json.loads(row[2]))
        except DECODE_ERRORS as exc:
            raise StoreError(f"digest {row[0]} cannot be read: {exc}") from exc
        return StoredDigest(
            id=int(row[0]),
            receiver=str(row[1]),
            parts=parts,
            parts_sent=int(row[3]),
            sending_part=row[4],
            sending_at=from_us(row[5]) if row[5] is not None else None,
        )

    async def claim_digest(self, digest_id: int, now: datetime, lease: timedelta) -> DigestClaim:
        """Lease every pending delivery of a stored digest, oldest first — unless
        another replica holds a live lease on one of them: then nothing (``HELD_ELSEWHERE``).

        The digest's row lock makes the check and the lease one step against
        another replica resuming the same digest.
        """
        now_us = to_us(now)
        async with self._db.transaction("claim_digest") as conn:
            await conn.execute("SELECT 1 FROM digests WHERE id = $1 FOR UPDATE", digest_id)
            held = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE digest_id = $1 AND status = 'pending'"
                " AND lease_until > $2 AND lease_owner IS DISTINCT FROM $3)",
                digest_id,
                now_us,
                self.replica,
            )
            if held:
                return DigestClaim(DigestClaimStatus.HELD_ELSEWHERE)
            # Nobody else holds a live lease here: another's lease is an expired one.
            taken = await conn.fetchval(
                "SELECT COUNT(*) FROM deliveries WHERE digest_id = $1 AND status = 'pending'"
                " AND lease_until IS NOT NULL AND lease_owner IS DISTINCT FROM $2",
                digest_id,
                self.replica,
            )
            rows = await conn.fetch(
                f"UPDATE deliveries SET lease_until = $1, lease_owner = $2"
                f" WHERE digest_id = $3 AND status = 'pending' RETURNING {COLUMNS}",
                to_us(now + lease),
                self.replica,
                digest_id,
            )
            claimed = await decode_claimed(conn, rows, now_us)
        self._note_takeovers(int(taken))
        self._leases.track((d.id for d in claimed), lease)
        if not claimed:
            return DigestClaim(DigestClaimStatus.FINISHED)
        claimed.sort(key=lambda d: (d.accepted_at, d.id))
        return DigestClaim(DigestClaimStatus.CLAIMED, tuple(claimed))

    async def digest_progress(
        self, digest_id: int, parts_sent: int, finished: Sequence[int], now: datetime
    ) -> None:
        """Record a sent (or given-up) digest part and its finished deliveries at once."""
        async with self._db.transaction("digest_progress") as conn:
            await conn.execute(
                "UPDATE digests SET parts_sent = $1, sending_part = NULL, sending_at = NULL WHERE id = $2",
                parts_sent,
                digest_id,
            )
            # WeCom took a part: the digest's other deliveries start their backoff over.
            await conn.execute(
                "UPDATE deliveries SET failures_since_progress = 0 WHERE digest_id = $1 AND status = 'pending'",
                digest_id,
            )
            await conn.execute(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, finished_at = $1,"
                " lease_until = NULL WHERE id = ANY($2::bigint[]) AND status = 'pending'",
                to_us(now),
                list(finished),
            )

    async def recent_sends(
        self, since: datetime, keys: Sequence[str] | None = None
    ) -> list[tuple[str, datetime]]:
        """Sends counted against rate limits after ``since`` (of ``keys``, if given), oldest first."""
        rows = await self._db.fetch(
            "recent_sends",
            "SELECT budget_key, sent_at FROM sends WHERE sent_at > $1"
            " AND ($2::text[] IS NULL OR budget_key = ANY($2::text[])) ORDER BY sent_at, id",
            to_us(since),
            None if keys is None else list(keys),
        )
        return [(str(row[0]), from_us(row[1])) for row in rows]

    async def record_sends(self, budget_keys: Sequence[str], at: datetime) -> None:
        """Count one send against each of ``budget_keys``."""
        if budget_keys:
            async with self._db.transaction("record_sends") as conn:
                await _insert_sends(conn, budget_keys, at)

    async def record_attempt(
        self,
        budget_keys: Sequence[str],
        at: datetime,
        *,
        part: int | None,
        delivery_id: int | None = None,
        digest_id: int | None = None,
    ) -> None:
        """Before a send: count it and remember which part is on its way since ``at``,
        in one transaction; ``part=None`` clears that (WeCom answered)."""
        sending_at = to_us(at) if part is not None else None
        async with self._db.transaction("record_attempt") as conn:
            if delivery_id is not None:
                await conn.execute(
                    "UPDATE deliveries SET sending_part = $1, sending_at = $2 WHERE id = $3",
                    part,
                    sending_at,
                    delivery_id,
                )
            if digest_id is not None:
                await conn.execute(
                    "UPDATE digests SET sending_part = $1, sending_at = $2 WHERE id = $3",
                    part,
                    sending_at,
                    digest_id,
                )
            await _insert_sends(conn, budget_keys, at)

    async def forget_sends(self, before: datetime) -> int:
        """Delete sends older than every rate-limit window."""
        return await self._db.execute("forget_sends", "DELETE FROM sends WHERE sent_at < $1", to_us(before))


async def _insert_sends(conn: Connection, keys: Sequence[str], at: datetime) -> None:
    """One row per key, in the order given (ids ascend with it)."""
    if keys:
        at_us = to_us(at)
        await conn.executemany(
            "INSERT INTO sends (budget_key, sent_at) VALUES ($1, $2)", [(key, at_us) for key in keys]
        )
