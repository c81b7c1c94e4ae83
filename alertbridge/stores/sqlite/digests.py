"""The outbox's stored digests and its record of sends against rate limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.stores.codec import (
    COLUMNS,
    DECODE_ERRORS,
    dumps,
    from_us,
    part_from_json,
    part_to_json,
    to_us,
)
from alertbridge.stores.outbox import DigestClaim, DigestClaimStatus, DigestPartRecord, StoredDigest
from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.sqlite.outbox_schema import decode_claimed
from alertbridge.stores.sqlite.reservations import SqliteReservations


class SqliteDigestsAndSends(SqliteReservations):
    """The digest and send-count half of ``SqliteOutboxStore`` (a mixin on its connection).

    Digests are rendered once and kept until every part is sent, so a crash
    between WeCom's answer and our bookkeeping re-sends the very same bytes.
    """

    _connection: SqliteConnection

    async def create_digest(
        self, receiver: str, recipients: Recipients, parts: Sequence[DigestPartRecord], now: datetime
    ) -> StoredDigest:
        """Store a digest and tie its deliveries to it, in one transaction."""
        encoded = dumps([part_to_json(part) for part in parts])
        members = [i for part in parts for _, ids in part.finished for i in ids]
        async with self._connection.session("create_digest", write=True, durable=False) as db:
            row = await db.execute_insert(
                "INSERT INTO digests (receiver, recipients, parts, part_count, created_at) VALUES (?, ?, ?, ?, ?)",
                (receiver, dumps(recipients.to_dict()), encoded, len(parts), to_us(now)),
            )
            if row is None:  # pragma: no cover - last_insert_rowid() always answers
                raise StoreError("create_digest: no row id returned")
            digest_id = int(row[0])
            await db.executemany(
                "UPDATE deliveries SET digest_id = ? WHERE id = ?", [(digest_id, i) for i in members]
            )
        return StoredDigest(id=digest_id, receiver=receiver, parts=tuple(parts), parts_sent=0)

    async def open_digest(self, receiver: str, recipients: Recipients) -> StoredDigest | None:
        """The oldest digest to this target with parts still to send."""
        row = await self._connection.fetchone(
            "open_digest",
            "SELECT id, receiver, parts, parts_sent, sending_part, sending_at FROM digests"
            " WHERE receiver = ? AND recipients = ? AND parts_sent < part_count ORDER BY id LIMIT 1",
            (receiver, dumps(recipients.to_dict())),
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
        """Lease every pending delivery of a stored digest, oldest first.

        Leased or not: with one serving process, a lease on a digest's
        delivery is this process's, and resuming the digest is what it was for.
        """
        now_us = to_us(now)
        async with self._connection.session("claim_digest", write=True, durable=False) as db:
            rows = await db.execute_fetchall(
                f"UPDATE deliveries SET lease_until = ? WHERE digest_id = ? AND status = 'pending'"
                f" RETURNING {COLUMNS}",
                (to_us(now + lease), digest_id),
            )
            claimed = await decode_claimed(db, rows, now_us)
        if not claimed:
            return DigestClaim(DigestClaimStatus.FINISHED)
        claimed.sort(key=lambda d: (d.accepted_at, d.id))
        return DigestClaim(DigestClaimStatus.CLAIMED, tuple(claimed))

    async def lock_target(
        self, receiver: str, recipients: Recipients, now: datetime, lease: timedelta
    ) -> bool:
        """Always True: the one serving process's dispatcher runs one worker per target."""
        return True

    async def unlock_target(self, receiver: str, recipients: Recipients) -> None:
        """Nothing to give up (see ``lock_target``)."""

    async def digest_progress(
        self, digest_id: int, parts_sent: int, finished: Sequence[int], now: datetime
    ) -> None:
        """Record a sent (or given-up) digest part and its finished deliveries at once
        (its send was counted before it was made: ``record_attempt``)."""
        async with self._connection.session("digest_progress", write=True, durable=False) as db:
            await db.execute(
                "UPDATE digests SET parts_sent = ?, sending_part = NULL, sending_at = NULL WHERE id = ?",
                (parts_sent, digest_id),
            )
            # WeCom took a part: the digest's other deliveries start their backoff over.
            await db.execute(
                "UPDATE deliveries SET failures_since_progress = 0 WHERE digest_id = ? AND status = 'pending'",
                (digest_id,),
            )
            await db.executemany(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, finished_at = ?,"
                " lease_until = NULL WHERE id = ? AND status = 'pending'",
                [(to_us(now), delivery_id) for delivery_id in finished],
            )

    async def recent_sends(
        self, since: datetime, keys: Sequence[str] | None = None
    ) -> list[tuple[str, datetime]]:
        """Sends counted against rate limits after ``since`` (of ``keys``, if given), oldest first."""
        if keys is None:
            rows = await self._connection.fetchall(
                "recent_sends",
                "SELECT budget_key, sent_at FROM sends WHERE sent_at > ? ORDER BY sent_at",
                (to_us(since),),
            )
        else:
            marks = ", ".join("?" for _ in keys)
            rows = await self._connection.fetchall(
                "recent_sends",
                f"SELECT budget_key, sent_at FROM sends WHERE sent_at > ? AND budget_key IN ({marks})"
                " ORDER BY sent_at",
                (to_us(since), *keys),
            )
        return [(str(row[0]), from_us(row[1])) for row in rows]

    async def record_sends(self, budget_keys: Sequence[str], at: datetime) -> None:
        """Count one send against each of ``budget_keys`` (one row per key and slot)."""
        if budget_keys:
            async with self._connection.session("record_sends", write=True, durable=False) as db:
                await self._insert_sends(db, budget_keys, at)

    async def record_attempt(
        self,
        budget_keys: Sequence[str],
        at: datetime,
        *,
        part: int | None,
        delivery_id: int | None = None,
        digest_id: int | None = None,
    ) -> None:
        """Before a send: count it against ``budget_keys`` and remember that part
        ``part`` of the delivery or digest is on its way since ``at``, in one
        transaction. ``part=None`` clears it: WeCom answered, the part did not arrive."""
        sending = (part, to_us(at) if part is not None else None)
        async with self._connection.session("record_attempt", write=True, durable=False) as db:
            if delivery_id is not None:
                await db.execute(
                    "UPDATE deliveries SET sending_part = ?, sending_at = ? WHERE id = ?",
                    (*sending, delivery_id),
                )
            if digest_id is not None:
                await db.execute(
                    "UPDATE digests SET sending_part = ?, sending_at = ? WHERE id = ?", (*sending, digest_id)
                )
            await self._insert_sends(db, budget_keys, at)

    async def forget_sends(self, before: datetime) -> int:
        """Delete sends older than every rate-limit window."""
        return await self._connection.execute(
            "forget_sends", "DELETE FROM sends WHERE sent_at < ?", (to_us(before),), durable=False
        )

    @staticmethod
    async def _insert_sends(db: aiosqlite.Connection, keys: Sequence[str], at: datetime) -> None:
        if keys:
            await db.executemany(
                "INSERT INTO sends (budget_key, sent_at) VALUES (?, ?)", [(key, to_us(at)) for key in keys]
            )
