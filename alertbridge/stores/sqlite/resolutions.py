"""The resolution work of resolved deliveries in SQLite (see ``Resolution``).

The send path records a resolved delivery's work as pending; the upkeep
claims it, does it and decides its outcome; the delivery reads that outcome
when it is claimed again. Every step is one transaction on the shared
connection, so a restart between any two finds the work where it was left.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from alertbridge.errors import StoreError
from alertbridge.stores.codec import decode_rows, to_us
from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.state import Resolution, ResolutionState
from alertbridge.stores.state_codec import RESOLUTION_COLUMNS, decode_one, to_resolution


class SqliteResolutions:
    """The resolutions part of ``SqliteStateStore`` (a mixin on its connection)."""

    _connection: SqliteConnection

    async def request_resolution(
        self, delivery_id: int, ref: int, receiver: str, now: datetime
    ) -> Resolution:
        """Pending from ``now``; a second request for the delivery keeps the first."""
        async with self._connection.session("request_resolution", write=True) as db:
            await db.execute(
                "INSERT INTO resolutions (delivery_id, ref, receiver, requested_at, state)"
                " VALUES (?, ?, ?, ?, 'pending') ON CONFLICT (delivery_id) DO NOTHING",
                (delivery_id, ref, receiver, to_us(now)),
            )
            async with db.execute(
                f"SELECT {RESOLUTION_COLUMNS} FROM resolutions WHERE delivery_id = ?", (delivery_id,)
            ) as cur:
                stored = decode_one(await cur.fetchone(), to_resolution)
        if stored is None:  # pragma: no cover - written in this very transaction
            raise StoreError(f"request_resolution: the resolution of delivery {delivery_id} vanished")
        return stored

    async def get_resolution(self, delivery_id: int) -> Resolution | None:
        row = await self._connection.fetchone(
            "get_resolution",
            f"SELECT {RESOLUTION_COLUMNS} FROM resolutions WHERE delivery_id = ?",
            (delivery_id,),
        )
        return decode_one(row, to_resolution)

    async def claim_resolutions(self, now: datetime, lease: timedelta, limit: int) -> list[Resolution]:
        """Pending, unheld (or held past their lease) resolutions, oldest first."""
        now_us = to_us(now)
        async with self._connection.session("claim_resolutions", write=True) as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {RESOLUTION_COLUMNS} FROM resolutions"
                    " WHERE state = 'pending' AND (held_until IS NULL OR held_until <= ?)"
                    " ORDER BY requested_at, delivery_id LIMIT ?",
                    (now_us, limit),
                )
            )
            await db.executemany(
                "UPDATE resolutions SET held_until = ? WHERE delivery_id = ?",
                [(to_us(now + lease), row[0]) for row in rows],
            )
        return decode_rows(rows, to_resolution, "claim_resolutions")

    async def decide_resolution(
        self, delivery_id: int, state: ResolutionState, now: datetime
    ) -> Resolution | None:
        """Only a pending resolution takes ``state``: the first decision counts."""
        async with self._connection.session("decide_resolution", write=True) as db:
            await db.execute(
                "UPDATE resolutions SET state = ?, decided_at = ?, held_until = NULL"
                " WHERE delivery_id = ? AND state = 'pending'",
                (state.value, to_us(now), delivery_id),
            )
            async with db.execute(
                f"SELECT {RESOLUTION_COLUMNS} FROM resolutions WHERE delivery_id = ?", (delivery_id,)
            ) as cur:
                return decode_one(await cur.fetchone(), to_resolution)
