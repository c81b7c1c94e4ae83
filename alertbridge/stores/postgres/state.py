"""The PostgreSQL ``StateStore``: references, acks, callback dedup (and, in
``command_records``, silences, audit and cards), shared by every replica.

Why it looks the way it does:

* **One reference per group, whichever replica records it.** Two replicas
  recording the same group at once take the same transaction-scoped
  advisory lock (a hash of receiver, source and group key) before reading it,
  so the second sees the first's row instead of inserting another.
* **Numbers come from a sequence** (an identity column): ``#27`` is unique
  across replicas and never handed to another group after pruning.
* **A callback acts once across replicas**: one upsert on the key's primary
  key decides, and a concurrent one waits for it and then sees it live.
* Same rows and encodings as SQLite, decoded by ``alertbridge.stores.state_codec``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.model import AlertGroup, Status
from alertbridge.stores.codec import DECODE_ERRORS, decode_rows, dumps, to_us
from alertbridge.stores.postgres.attachments import PostgresAttachments
from alertbridge.stores.postgres.command_records import PostgresCommandRecords
from alertbridge.stores.postgres.db import Connection, PostgresDatabase, affected
from alertbridge.stores.postgres.resolutions import PostgresResolutions
from alertbridge.stores.postgres.sent_messages import PostgresSentMessages
from alertbridge.stores.state import AlertRef, RefUpdate
from alertbridge.stores.state_codec import (
    R_REF_COLUMNS,
    REF_COLUMNS,
    alerts_json,
    decode_alerts,
    decode_one,
    ref_title,
    to_ref,
)

logger = logging.getLogger(__name__)

_PRUNE_CHUNK: Final = 500


class PostgresStateStore(
    PostgresCommandRecords, PostgresResolutions, PostgresSentMessages, PostgresAttachments
):
    """``StateStore`` on the replica's PostgreSQL database (the outbox's pool)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database
        self._open = False

    async def open(self) -> None:
        """Join the replica's pool (connecting and migrating if the outbox has not)."""
        if not self._open:
            await self._db.acquire()
            self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self._db.release()

    @staticmethod
    async def _fetch_ref(conn: Connection, ref: int) -> AlertRef | None:
        row = await conn.fetchrow(f"SELECT {REF_COLUMNS} FROM alert_refs WHERE ref = $1", ref)
        return decode_one(row, to_ref)

    # -- references ----------------------------------------------------------

    async def record_notification(
        self,
        receiver: str,
        group: AlertGroup,
        recipients: Recipients,
        now: datetime,
        *,
        delivery_id: int | None = None,
        cluster: str = "",
    ) -> RefUpdate:
        """Upsert the reference of (receiver, source, cluster, group_key); see ``StateStore``.

        ``changed`` compares firing fingerprints only, as in SQLite.
        """
        now_us = to_us(now)
        firing = group.status is Status.FIRING
        new_fps = {alert.fingerprint for alert in group.alerts if alert.status is Status.FIRING}
        title = ref_title(group)
        alerts = alerts_json(group)
        recipients_json = dumps(recipients.to_dict())
        async with self._db.transaction("record_notification") as conn:
            # Serializes replicas recording the same group (see module doc);
            # the lock ends with the transaction.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                "\x1f".join((receiver, group.source, group.group_key)),
            )
            # A row of unknown cluster ('') is this sender's unless it has its own.
            row = await conn.fetchrow(
                "SELECT ref, alerts, ack_user, ack_at, firing, last_delivery, last_suppressed"
                " FROM alert_refs WHERE receiver = $1 AND source = $2 AND group_key = $3"
                " AND cluster IN ($4, '') ORDER BY cluster = '' LIMIT 1",
                receiver,
                group.source,
                group.group_key,
                cluster,
            )
            if row is not None and delivery_id is not None and row[5] == delivery_id:
                # A retry of the delivery recorded last: same verdict, no change.
                stored = await self._fetch_ref(conn, int(row[0]))
                if stored is not None:
                    return RefUpdate(ref=stored, changed=False, suppressed=bool(row[6]))
            if row is None:
                ref_no = int(
                    await conn.fetchval(
                        "INSERT INTO alert_refs (receiver, source, cluster, group_key, external_url, title,"
                        " alerts, recipients, firing, created_at, updated_at, resolved_at, last_delivery)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) RETURNING ref",
                        receiver,
                        group.source,
                        cluster,
                        group.group_key,
                        group.external_url,
                        title,
                        alerts,
                        recipients_json,
                        firing,
                        now_us,
                        None if firing else now_us,
                        delivery_id,
                    )
                )
                changed, suppressed = True, False
            else:
                ref_no = int(row[0])
                old_fps: set[str] | None
                try:
                    old_fps = {a.fingerprint for a in decode_alerts(row[1]) if a.firing}
                except DECODE_ERRORS as exc:
                    logger.error("reference #%d has unreadable alerts (%s); treating as changed", ref_no, exc)
                    old_fps = None
                changed = old_fps != new_fps
                # The ack holds for one firing episode, its resolution included.
                new_episode = firing and not row[4]
                keep_ack = row[2] is not None and not new_episode
                suppressed = keep_ack and firing and not changed
                await conn.execute(
                    "UPDATE alert_refs SET cluster = $1, external_url = $2, title = $3, alerts = $4,"
                    " recipients = $5, firing = $6, updated_at = $7,"
                    # The first resolve time counts (pruning is not pushed out).
                    " resolved_at = CASE WHEN $6 THEN NULL ELSE COALESCE(resolved_at, $7) END,"
                    " ack_user = CASE WHEN $8 THEN ack_user END,"
                    " ack_at = CASE WHEN $8 THEN ack_at END,"
                    " last_delivery = $9, last_suppressed = $10"
                    " WHERE ref = $11",
                    cluster,
                    group.external_url,
                    title,
                    alerts,
                    recipients_json,
                    firing,
                    now_us,
                    keep_ack,
                    delivery_id,
                    suppressed,
                    ref_no,
                )
            stored = await self._fetch_ref(conn, ref_no)
        if stored is None:  # pragma: no cover - written in this very transaction
            raise StoreError(f"record_notification: reference #{ref_no} vanished")
        return RefUpdate(ref=stored, changed=changed, suppressed=suppressed)

    async def get_ref(self, ref: int) -> AlertRef | None:
        async with self._db.transaction("get_ref") as conn:
            return await self._fetch_ref(conn, ref)

    async def list_refs(self, limit: int) -> list[AlertRef]:
        """Most recently notified first, for the CLI."""
        rows = await self._db.fetch(
            "list_refs",
            f"SELECT {REF_COLUMNS} FROM alert_refs ORDER BY updated_at DESC, ref DESC LIMIT $1",
            limit,
        )
        return decode_rows(rows, to_ref, "list_refs")

    async def record_sent(self, ref: int, users: Sequence[str], now: datetime) -> None:
        """Remember that these users were sent this reference (only while it exists)."""
        # Sorted: two replicas upserting the same users lock their rows in one order.
        unique = sorted(set(users))
        if not unique:
            return
        await self._db.execute(
            "record_sent",
            "INSERT INTO ref_sent (user_id, ref, sent_at)"
            " SELECT u, r.ref, $2 FROM alert_refs r, unnest($1::text[]) AS u WHERE r.ref = $3"
            " ON CONFLICT (user_id, ref) DO UPDATE SET sent_at = excluded.sent_at",
            unique,
            to_us(now),
            ref,
        )

    async def latest_ref_for_user(self, user: str) -> AlertRef | None:
        refs = await self._refs_for_user("latest_ref_for_user", user, firing_only=False, limit=1)
        return refs[0] if refs else None

    async def refs_for_user(self, user: str, *, firing_only: bool, limit: int) -> list[AlertRef]:
        """Newest first by the time each was last sent to ``user``."""
        return await self._refs_for_user("refs_for_user", user, firing_only=firing_only, limit=limit)

    async def _refs_for_user(self, op: str, user: str, *, firing_only: bool, limit: int) -> list[AlertRef]:
        firing_clause = " AND r.firing" if firing_only else ""
        rows = await self._db.fetch(
            op,
            f"SELECT {R_REF_COLUMNS} FROM ref_sent s JOIN alert_refs r ON r.ref = s.ref"
            f" WHERE s.user_id = $1{firing_clause}"
            " ORDER BY s.sent_at DESC, s.ref DESC LIMIT $2",
            user,
            limit,
        )
        return decode_rows(rows, to_ref, op)

    async def set_ack(self, ref: int, user: str, now: datetime) -> AlertRef | None:
        """Acknowledge (or re-acknowledge) ``ref``; None if it is unknown."""
        row = await self._db.fetchrow(
            "set_ack",
            f"UPDATE alert_refs SET ack_user = $1, ack_at = $2 WHERE ref = $3 RETURNING {REF_COLUMNS}",
            user,
            to_us(now),
            ref,
        )
        return decode_one(row, to_ref)

    # -- callback dedup --------------------------------------------------------

    async def claim_callback(self, key: str, now: datetime, ttl: timedelta) -> bool:
        """True the first time ``key`` is seen within ``ttl``, on any replica."""
        claimed = await self._db.execute(
            "claim_callback",
            "INSERT INTO callback_keys AS c (key, expires_at) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, reply = NULL"
            " WHERE c.expires_at <= $3",
            key,
            to_us(now + ttl),
            to_us(now),
        )
        return claimed > 0

    async def save_callback_reply(self, key: str, reply: str) -> None:
        await self._db.execute(
            "save_callback_reply", "UPDATE callback_keys SET reply = $1 WHERE key = $2", reply, key
        )

    async def callback_reply(self, key: str, now: datetime) -> str | None:
        row = await self._db.fetchrow(
            "callback_reply",
            "SELECT reply FROM callback_keys WHERE key = $1 AND expires_at > $2",
            key,
            to_us(now),
        )
        return None if row is None or row["reply"] is None else str(row["reply"])

    # -- retention -----------------------------------------------------------------

    async def prune(self, now: datetime, retention: timedelta) -> int:
        """Forget references resolved before ``now - retention`` (with their
        sent-index rows, cards, sent messages and resolutions), spent callback keys, ended
        silences and resolutions decided before then; the audit trail is
        kept. Returns the rows deleted."""
        cutoff = to_us(now - retention)
        total = 0
        while True:
            async with self._db.transaction("prune") as conn:
                chosen = [
                    int(row[0])
                    for row in await conn.fetch(
                        "SELECT ref FROM alert_refs WHERE resolved_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                        cutoff,
                        _PRUNE_CHUNK,
                    )
                ]
                for table in ("ref_sent", "cards", "sent_messages", "resolutions", "alert_refs"):
                    status = await conn.execute(f"DELETE FROM {table} WHERE ref = ANY($1::bigint[])", chosen)
                    total += affected(status)
            if len(chosen) < _PRUNE_CHUNK:
                break
        total += await self._db.execute(
            "prune", "DELETE FROM callback_keys WHERE expires_at <= $1", to_us(now)
        )
        total += await self._db.execute(
            "prune", "DELETE FROM silences WHERE LEAST(ends_at, COALESCE(expired_at, ends_at)) < $1", cutoff
        )
        total += await self._db.execute("prune", "DELETE FROM resolutions WHERE decided_at < $1", cutoff)
        return total
