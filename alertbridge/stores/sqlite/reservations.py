"""Budget reservations in the SQLite outbox: check and count a send in one write transaction.

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so counting a key's
sends in its window and inserting the new ones inside one write
transaction is atomic against every other connection to the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from alertbridge.errors import StoreError
from alertbridge.stores.codec import to_us
from alertbridge.stores.outbox import Reservation, SendLimit
from alertbridge.stores.sqlite.db import SqliteConnection


class SqliteReservations:
    """The reservation half of the outbox's record of sends (a mixin on its connection)."""

    _connection: SqliteConnection

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
        async with self._connection.session("reserve_sends", write=True, durable=False) as db:
            fits = slots
            for limit in limits:
                async with db.execute(
                    "SELECT COUNT(*) FROM sends WHERE budget_key = ? AND sent_at > ?",
                    (limit.key, to_us(at - limit.window)),
                ) as cur:
                    row = await cur.fetchone()
                fits = min(fits, limit.allowed - (int(row[0]) if row else 0))
            if fits < 1:
                return None
            if part is not None:
                sending = (part, to_us(at))
                if delivery_id is not None:
                    await db.execute(
                        "UPDATE deliveries SET sending_part = ?, sending_at = ? WHERE id = ?",
                        (*sending, delivery_id),
                    )
                if digest_id is not None:
                    await db.execute(
                        "UPDATE digests SET sending_part = ?, sending_at = ? WHERE id = ?",
                        (*sending, digest_id),
                    )
            ids: list[int] = []
            for _ in range(fits):
                for key in keys:
                    inserted = await db.execute_insert(
                        "INSERT INTO sends (budget_key, sent_at) VALUES (?, ?)", (key, to_us(held_until))
                    )
                    if inserted is None:  # pragma: no cover - last_insert_rowid() always answers
                        raise StoreError("reserve_sends: no row id returned")
                    ids.append(int(inserted[0]))
        return Reservation(slots=fits, ids=tuple(ids))

    async def settle_sends(self, reservation: Reservation, sent_at: datetime) -> None:
        """The slots count from when the messenger answered."""
        if reservation.ids:
            async with self._connection.session("settle_sends", write=True, durable=False) as db:
                await db.executemany(
                    "UPDATE sends SET sent_at = ? WHERE rowid = ?",
                    [(to_us(sent_at), row_id) for row_id in reservation.ids],
                )

    async def refund_sends(self, reservation: Reservation) -> None:
        """Give the slots of a failed send back."""
        if reservation.ids:
            async with self._connection.session("refund_sends", write=True, durable=False) as db:
                await db.executemany("DELETE FROM sends WHERE rowid = ?", [(i,) for i in reservation.ids])
