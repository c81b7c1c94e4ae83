"""Which replica composes a target's digests: a lease row per target.

Two replicas merging one member's backlog at once would each compose a
digest of half of it. ``lock_target`` takes a lease on the target (receiver
and recipients) for this replica's name: a row, not an advisory lock,
because it is held across the sends of the digest's parts and must not pin
a pooled connection that long. A replica killed while holding it leaves
it to run out, or to its successor under the same name at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from alertbridge.message import Recipients
from alertbridge.stores.codec import dumps, to_us
from alertbridge.stores.postgres.db import PostgresDatabase


class PostgresTargetLocks:
    """The target half of the digest bookkeeping (a mixin on the outbox's database)."""

    _db: PostgresDatabase
    replica: str

    async def lock_target(
        self, receiver: str, recipients: Recipients, now: datetime, lease: timedelta
    ) -> bool:
        """Take or renew the target's lease; False while another replica's is live."""
        taken = await self._db.fetchval(
            "lock_target",
            "INSERT INTO target_locks (receiver, recipients, owner, until) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (receiver, recipients) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until"
            " WHERE target_locks.owner = EXCLUDED.owner OR target_locks.until <= $5"
            " RETURNING 1",
            receiver,
            dumps(recipients.to_dict()),
            self.replica,
            to_us(now + lease),
            to_us(now),
        )
        return taken is not None

    async def unlock_target(self, receiver: str, recipients: Recipients) -> None:
        """Give up this replica's lease on the target."""
        await self._db.execute(
            "unlock_target",
            "DELETE FROM target_locks WHERE receiver = $1 AND recipients = $2 AND owner = $3",
            receiver,
            dumps(recipients.to_dict()),
            self.replica,
        )
