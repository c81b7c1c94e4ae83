"""Budget reservations in the PostgreSQL outbox: atomic across replicas.

Replicas sharing the database reserve a member's (or a robot's) slots
under a transaction-scoped advisory lock per budget key, taken in sorted
key order so two reservations over overlapping keys never deadlock. Under
READ COMMITTED each statement sees what was committed before it started,
so the count taken after the lock includes every reservation that held
the lock before: two replicas can never both take a key's last slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from alertbridge.stores.codec import to_us
from alertbridge.stores.outbox import Reservation, SendLimit
from alertbridge.stores.postgres.db import PostgresDatabase


class PostgresReservations:
    """The reservation half of the outbox's record of sends (a mixin on its database)."""

    _db: PostgresDatabase

    async def reserve_sends(
        self,
        limits: Sequence[SendLimit],
        at: datetime,
        slots: int,
        *,
        held_until: datetime,
        part: int | None = None,
        delivery_id: int | None = None,
        digest_id: int | None = None,
    ) -> Reservation | None:
        """Take up to ``slots`` slots of every limit's key, or none (see OutboxStore)."""
        keys = sorted({limit.key for limit in limits})
        async with self._db.transaction("reserve_sends") as conn:
            for key in keys:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            fits = slots
            for limit in limits:
                used = await conn.fetchval(
                    "SELECT COUNT(*) FROM sends WHERE budget_key = $1 AND sent_at > $2",
                    limit.key,
                    to_us(at - limit.window),
                )
                fits = min(fits, limit.allowed - int(used))
            if fits < 1:
                return None
            if part is not None:
                if delivery_id is not None:
                    await conn.execute(
                        "UPDATE deliveries SET sending_part = $1, sending_at = $2 WHERE id = $3",
                        part,
                        to_us(at),
                        delivery_id,
                    )
                if digest_id is not None:
                    await conn.execute(
                        "UPDATE digests SET sending_part = $1, sending_at = $2 WHERE id = $3",
                        part,
                        to_us(at),
                        digest_id,
                    )
            rows = await conn.fetch(
                "INSERT INTO sends (budget_key, sent_at) SELECT key, $2 FROM unnest($1::text[]) AS key RETURNING id",
                [key for _ in range(fits) for key in keys],
                to_us(held_until),
            )
        return Reservation(slots=fits, ids=tuple(int(row[0]) for row in rows))

    async def settle_sends(self, reservation: Reservation, sent_at: datetime) -> None:
        """The slots count from when the messenger answered."""
        if reservation.ids:
            await self._db.execute(
                "settle_sends",
                "UPDATE sends SET sent_at = $1 WHERE id = ANY($2::bigint[])",
                to_us(sent_at),
                list(reservation.ids),
            )

    async def refund_sends(self, reservation: Reservation) -> None:
        """Give the slots of a failed send back."""
        if reservation.ids:
            await self._db.execute(
                "refund_sends", "DELETE FROM sends WHERE id = ANY($1::bigint[])", list(reservation.ids)
            )
