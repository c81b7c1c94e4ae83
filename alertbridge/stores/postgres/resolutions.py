"""The resolution work of resolved deliveries in PostgreSQL (see ``Resolution``).

Several replicas' upkeeps may look for pending work at once: a claim takes
rows with ``FOR UPDATE SKIP LOCKED`` and holds them for a lease, so each
resolution is worked by one upkeep at a time; a decision is taken only by a
row still pending, so the first one counts on every replica.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from alertbridge.errors import StoreError
from alertbridge.stores.codec import decode_rows, to_us
from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.state import Resolution, ResolutionState
from alertbridge.stores.state_codec import RESOLUTION_COLUMNS, decode_one, to_resolution


class PostgresResolutions:
    """The resolutions part of ``PostgresStateStore`` (a mixin on its database)."""

    _db: PostgresDatabase

    async def request_resolution(
        self, delivery_id: int, ref: int, receiver: str, now: datetime
    ) -> Resolution:
        """Pending from ``now``; a second request for the delivery keeps the first."""
        async with self._db.transaction("request_resolution") as conn:
            await conn.execute(
                "INSERT INTO resolutions (delivery_id, ref, receiver, requested_at, state)"
                " VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (delivery_id) DO NOTHING",
                delivery_id,
                ref,
                receiver,
                to_us(now),
            )
            row = await conn.fetchrow(
                f"SELECT {RESOLUTION_COLUMNS} FROM resolutions WHERE delivery_id = $1", delivery_id
            )
        stored = decode_one(row, to_resolution)
        if stored is None:  # pragma: no cover - written in this very transaction
            raise StoreError(f"request_resolution: the resolution of delivery {delivery_id} vanished")
        return stored

    async def get_resolution(self, delivery_id: int) -> Resolution | None:
        row = await self._db.fetchrow(
            "get_resolution",
            f"SELECT {RESOLUTION_COLUMNS} FROM resolutions WHERE delivery_id = $1",
            delivery_id,
        )
        return decode_one(row, to_resolution)

    async def claim_resolutions(self, now: datetime, lease: timedelta, limit: int) -> list[Resolution]:
        """Pending, unheld (or held past their lease) resolutions, oldest first."""
        rows = await self._db.fetch(
            "claim_resolutions",
            f"UPDATE resolutions SET held_until = $1 WHERE delivery_id IN ("
            " SELECT delivery_id FROM resolutions"
            " WHERE state = 'pending' AND (held_until IS NULL OR held_until <= $2)"
            " ORDER BY requested_at, delivery_id LIMIT $3 FOR UPDATE SKIP LOCKED)"
            f" RETURNING {RESOLUTION_COLUMNS}",
            to_us(now + lease),
            to_us(now),
            limit,
        )
        claimed = decode_rows(rows, to_resolution, "claim_resolutions")
        return sorted(claimed, key=lambda r: (r.requested_at, r.delivery_id))

    async def decide_resolution(
        self, delivery_id: int, state: ResolutionState, now: datetime
    ) -> Resolution | None:
        """Only a pending resolution takes ``state``: the first decision counts."""
        async with self._db.transaction("decide_resolution") as conn:
            await conn.execute(
                "UPDATE resolutions SET state = $1, decided_at = $2, held_until = NULL"
                " WHERE delivery_id = $3 AND state = 'pending'",
                state.value,
                to_us(now),
                delivery_id,
            )
            row = await conn.fetchrow(
                f"SELECT {RESOLUTION_COLUMNS} FROM resolutions WHERE delivery_id = $1", delivery_id
            )
        return decode_one(row, to_resolution)
