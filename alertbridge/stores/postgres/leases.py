"""Keeping a live replica's leases alive, so only a dead replica's work moves on.

A lease (``[store] lease``, 30 s by default on PostgreSQL) must be short, so
the work of a replica killed mid-send goes to the others quickly; but a
replica that is alive may hold a claimed delivery for longer than that: a
message split into parts, each bounded by the WeCom timeout, or deliveries
queued behind a slow send to the same member. Rather than a lease long
enough for the worst case (which would delay every takeover by as much),
the replica renews the leases of the deliveries it claimed every third of
their lease, for as long as it runs: a renewal that fails (the database is
down) leaves two more chances before anything expires.

Only rows this replica's claims returned are renewed, and only while they
still carry this replica's lease: a delivery that was finished, rescheduled
or deferred has none and drops out; one that another replica took over after
all carries that replica's name and drops out too. A claim whose commit the
replica never saw acknowledged (the connection died) is not renewed, so its
lease simply runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from alertbridge.errors import StoreError
from alertbridge.stores.codec import to_us
from alertbridge.stores.postgres.db import PostgresDatabase

logger = logging.getLogger(__name__)

_RENEW: Final = (
    "UPDATE deliveries AS d SET lease_until = $1 + r.lease_us"
    " FROM unnest($2::bigint[], $3::bigint[]) AS r(id, lease_us)"
    " WHERE d.id = r.id AND d.status = 'pending' AND d.lease_until IS NOT NULL AND d.lease_owner = $4"
    " RETURNING d.id"
)


class LeaseKeeper:
    """Renews the leases of the deliveries one replica claimed, while it runs."""

    def __init__(self, database: PostgresDatabase, replica: str) -> None:
        self._db = database
        self._replica = replica
        # Claimed delivery id -> (the lease it was claimed with, which claim).
        self._held: dict[int, tuple[timedelta, int]] = {}
        self._claims = 0
        # When the next renewal is due (event-loop time); never while nothing is held.
        self._due = math.inf
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def track(self, delivery_ids: Iterable[int], lease: timedelta) -> None:
        """The claim that returned ``delivery_ids`` committed: keep their leases alive."""
        ids = list(delivery_ids)
        if not ids:
            return
        self._claims += 1
        for delivery_id in ids:
            self._held[delivery_id] = (lease, self._claims)
        # The first renewal of these is due a third of their lease from now.
        self._due = min(self._due, asyncio.get_running_loop().time() + lease.total_seconds() / 3)
        self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()  # of this event loop (a CLI may run several)
        self._task = asyncio.create_task(self._run(), name="outbox-lease-keeper")

    async def stop(self) -> None:
        """Stop renewing: what this replica still holds expires within its lease."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._held.clear()
        self._due = math.inf

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            delay = self._due - loop.time()
            if delay > 0:
                # Until the next renewal is due, or a claim brings it forward.
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancel that arrives as the event is set, and stop() would hang.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if math.isinf(delay) else delay):
                        await self._wake.wait()
                continue
            self._due = math.inf
            if not self._held:
                continue
            try:
                await self.renew(datetime.now(UTC))
            except StoreError as exc:
                logger.warning("outbox_lease_renewal_failed deliveries=%d error=%s", len(self._held), exc)
            if self._held:
                shortest = min(lease for lease, _ in self._held.values())
                self._due = min(self._due, loop.time() + shortest.total_seconds() / 3)

    async def renew(self, now: datetime) -> int:
        """Extend every lease still ours to ``now`` + its lease; forget the rest. How many were renewed."""
        held = dict(self._held)
        rows = await self._db.fetch(
            "renew leases",
            _RENEW,
            to_us(now),
            list(held),
            [lease // timedelta(microseconds=1) for lease, _ in held.values()],
            self._replica,
        )
        renewed = {int(row[0]) for row in rows}
        for delivery_id in held.keys() - renewed:
            # Claimed again meanwhile (a newer claim): that claim's lease stays tracked.
            if self._held.get(delivery_id) == held[delivery_id]:
                del self._held[delivery_id]
        return len(renewed)
