"""The SQLite ``StateStore``: references, acks, silences, callback dedup,
cards and the audit trail, in the same file as the outbox.

Why it looks the way it does:

* **Same file, own schema version.** One file is one thing to back up, and
  the outbox owns ``PRAGMA user_version``; this store therefore keeps its
  version in ``schema_versions`` (one row per component) and never touches
  the outbox's tables. The server runs both stores on the outbox's
  connection (``sqlite_stores``), so their transactions queue in-process; a
  CLI opening the file alongside has its own, and SQLite's file lock (with
  ``busy_timeout``) serializes the two processes' writes.
* **Same durability and locking rules as the outbox** (see
  ``alertbridge.stores.sqlite.outbox``): WAL + ``synchronous=FULL``, one
  ``asyncio.Lock`` around every operation, explicit ``BEGIN IMMEDIATE`` …
  ``COMMIT`` for writes, and ``sqlite3.Error``/``OSError`` → ``StoreError``.
  An ack or a silence a user was told about must survive a power cut like an
  accepted webhook does.
* **Reference numbers are never reused.** ``#27`` is typed by people and
  appears in old chat messages; ``AUTOINCREMENT`` guarantees a pruned
  reference's number is never handed to a different alert group.
* **No foreign keys.** Silence records and audit rows must outlive the
  references they mention, and sent-index rows and cards are only written
  for references that exist (``INSERT … SELECT``), so pruning deletes them
  together with their reference explicitly, in one transaction.

Timestamps are integer microseconds since the Unix epoch (UTC), as in the
outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.model import AlertGroup, Status
from alertbridge.stores.codec import DECODE_ERRORS, decode_rows, dumps, to_us
from alertbridge.stores.sqlite.attachments import SqliteAttachments
from alertbridge.stores.sqlite.command_records import SqliteCommandRecords
from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.sqlite.resolutions import SqliteResolutions
from alertbridge.stores.sqlite.sent_messages import SqliteSentMessages
from alertbridge.stores.sqlite.state_schema import migrate
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

# References deleted per prune transaction: a large backlog never holds the
# write lock long enough to stall webhook commits on the outbox connection.
_PRUNE_CHUNK: Final = 500


class SqliteStateStore(SqliteCommandRecords, SqliteResolutions, SqliteSentMessages, SqliteAttachments):
    """``StateStore`` on one SQLite file (normally the outbox's file).

    Like the outbox, it is meant for a single serving process; CLI tools may
    open the same file alongside it (``alertbridge audit`` reads ``list_audit``).
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: timedelta = timedelta(seconds=5),
        connection: SqliteConnection | None = None,
    ) -> None:
        """``connection``: the outbox's, when both live in one file. Sharing it
        queues the two stores' transactions in-process; two connections would
        meet at SQLite's file lock, whose busy handler sleeps (up to 100 ms a
        time) — under a webhook burst that sleep was the ingest's latency."""
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._connection = connection if connection is not None else SqliteConnection(self.path, busy_timeout)
        # Whether ``open`` connected (rather than joined a shared connection
        # its owner opened): then ``close`` disconnects too.
        self._opened_connection = False

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect (unless sharing an open connection), create or migrate this store's tables."""
        if self._connection.is_open:
            await self._connection.migrate(self._migrate)
        else:
            await self._connection.open(self._migrate)
            self._opened_connection = True

    async def close(self) -> None:
        """Disconnect if ``open`` connected; a connection its owner opened is the owner's to close."""
        if self._opened_connection:
            self._opened_connection = False
            await self._connection.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await migrate(db, self.path)

    @staticmethod
    async def _fetch_ref(db: aiosqlite.Connection, ref: int) -> AlertRef | None:
        async with db.execute(f"SELECT {REF_COLUMNS} FROM alert_refs WHERE ref = ?", (ref,)) as cur:
            row = await cur.fetchone()
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

        ``changed`` compares firing fingerprints only: a repeat that merely
        drops resolved alerts, or relabels annotations, is not news to
        someone who acknowledged it, but a new firing alert is.
        """
        now_us = to_us(now)
        firing = group.status is Status.FIRING
        new_fps = {alert.fingerprint for alert in group.alerts if alert.status is Status.FIRING}
        title = ref_title(group)
        alerts = alerts_json(group)
        recipients_json = dumps(recipients.to_dict())
        async with self._connection.session("record_notification", write=True, durable=False) as db:
            # A row of unknown cluster ('', from before clusters were kept)
            # is this sender's unless it already has one of its own.
            async with db.execute(
                "SELECT ref, alerts, ack_user, ack_at, firing, last_delivery, last_suppressed"
                " FROM alert_refs WHERE receiver = ? AND source = ? AND group_key = ? AND cluster IN (?, '')"
                " ORDER BY cluster = '' LIMIT 1",
                (receiver, group.source, group.group_key, cluster),
            ) as cur:
                row = await cur.fetchone()
            if row is not None and delivery_id is not None and row[5] == delivery_id:
                # A retry (or a re-send after a restart) of the delivery that
                # was recorded last: same verdict, nothing to update.
                stored = await self._fetch_ref(db, int(row[0]))
                if stored is not None:
                    return RefUpdate(ref=stored, changed=False, suppressed=bool(row[6]))
            if row is None:
                inserted = await db.execute_insert(
                    "INSERT INTO alert_refs (receiver, source, cluster, group_key, external_url, title,"
                    " alerts, recipients, firing, created_at, updated_at, resolved_at, last_delivery)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        receiver,
                        group.source,
                        cluster,
                        group.group_key,
                        group.external_url,
                        title,
                        alerts,
                        recipients_json,
                        int(firing),
                        now_us,
                        now_us,
                        None if firing else now_us,
                        delivery_id,
                    ),
                )
                if inserted is None:  # pragma: no cover - last_insert_rowid() always answers
                    raise StoreError("record_notification: no row id returned")
                ref_no = int(inserted[0])
                changed = True
                suppressed = False
            else:
                ref_no = int(row[0])
                old_fps: set[str] | None
                try:
                    old_fps = {a.fingerprint for a in decode_alerts(row[1]) if a.firing}
                except DECODE_ERRORS as exc:
                    # Unknown previous state: treat as news rather than suppress.
                    logger.error("reference #%d has unreadable alerts (%s); treating as changed", ref_no, exc)
                    old_fps = None
                changed = old_fps != new_fps
                # The ack holds for one firing episode, resolution included
                # (its message still says who was on it); a group that fires
                # again after resolving starts unacknowledged. Only an
                # unchanged repeat of an acknowledged, firing group is held back.
                new_episode = firing and not row[4]
                keep_ack = row[2] is not None and not new_episode
                suppressed = keep_ack and firing and not changed
                await db.execute(
                    "UPDATE alert_refs SET cluster = ?, external_url = ?, title = ?, alerts = ?,"
                    " recipients = ?, firing = ?, updated_at = ?,"
                    # The first resolve time counts: a repeated resolved
                    # notification must not push pruning further out.
                    " resolved_at = CASE WHEN ? THEN NULL ELSE COALESCE(resolved_at, ?) END,"
                    " ack_user = CASE WHEN ? THEN ack_user END,"
                    " ack_at = CASE WHEN ? THEN ack_at END,"
                    " last_delivery = ?, last_suppressed = ?"
                    " WHERE ref = ?",
                    (
                        cluster,
                        group.external_url,
                        title,
                        alerts,
                        recipients_json,
                        int(firing),
                        now_us,
                        int(firing),
                        now_us,
                        int(keep_ack),
                        int(keep_ack),
                        delivery_id,
                        int(suppressed),
                        ref_no,
                    ),
                )
            stored = await self._fetch_ref(db, ref_no)
        if stored is None:  # pragma: no cover - written in this very transaction
            raise StoreError(f"record_notification: reference #{ref_no} vanished")
        return RefUpdate(ref=stored, changed=changed, suppressed=suppressed)

    async def get_ref(self, ref: int) -> AlertRef | None:
        async with self._connection.session("get_ref", write=False) as db:
            return await self._fetch_ref(db, ref)

    async def record_sent(self, ref: int, users: Sequence[str], now: datetime) -> None:
        """Remember that these users were sent this reference.

        Only for a reference that exists: one pruned meanwhile has nothing
        left to answer `ack` with, and a dangling row would outlive pruning.
        """
        unique = list(dict.fromkeys(users))
        if not unique:
            return
        now_us = to_us(now)
        async with self._connection.session("record_sent", write=True, durable=False) as db:
            await db.executemany(
                "INSERT INTO ref_sent (user_id, ref, sent_at) SELECT ?, ref, ? FROM alert_refs"
                " WHERE ref = ? ON CONFLICT (user_id, ref) DO UPDATE SET sent_at = excluded.sent_at",
                [(user, now_us, ref) for user in unique],
            )

    async def latest_ref_for_user(self, user: str) -> AlertRef | None:
        """The reference last sent to ``user`` (what a bare `ack` means)."""
        refs = await self._refs_for_user("latest_ref_for_user", user, firing_only=False, limit=1)
        return refs[0] if refs else None

    async def refs_for_user(self, user: str, *, firing_only: bool, limit: int) -> list[AlertRef]:
        """Newest first by the time each was last sent to ``user``."""
        return await self._refs_for_user("refs_for_user", user, firing_only=firing_only, limit=limit)

    async def _refs_for_user(self, op: str, user: str, *, firing_only: bool, limit: int) -> list[AlertRef]:
        firing_clause = " AND r.firing = 1" if firing_only else ""
        rows = await self._connection.fetchall(
            op,
            f"SELECT {R_REF_COLUMNS} FROM ref_sent s JOIN alert_refs r ON r.ref = s.ref"
            f" WHERE s.user_id = ?{firing_clause}"
            " ORDER BY s.sent_at DESC, s.ref DESC LIMIT ?",
            (user, limit),
        )
        return decode_rows(rows, to_ref, op)

    async def set_ack(self, ref: int, user: str, now: datetime) -> AlertRef | None:
        """Acknowledge (or re-acknowledge) ``ref``; None if it is unknown.

        Resolved references are acked too: whether that makes sense is the
        command's decision, and the next firing notification clears it anyway
        (its fingerprints differ from the resolved notification's none).
        """
        async with self._connection.session("set_ack", write=True) as db:
            await db.execute(
                "UPDATE alert_refs SET ack_user = ?, ack_at = ? WHERE ref = ?", (user, to_us(now), ref)
            )
            return await self._fetch_ref(db, ref)

    # -- callback dedup --------------------------------------------------------

    async def claim_callback(self, key: str, now: datetime, ttl: timedelta) -> bool:
        """True the first time ``key`` is seen within ``ttl``.

        One upsert decides: it inserts a new key or takes over an expired
        one, and changes nothing (0 rows) for a live key. Being a single
        statement inside ``BEGIN IMMEDIATE``, it is atomic across coroutines
        and across connections and processes alike.
        """
        now_us = to_us(now)
        claimed = await self._connection.execute(
            "claim_callback",
            "INSERT INTO callback_keys (key, expires_at) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, reply = NULL"
            " WHERE callback_keys.expires_at <= ?",
            (key, to_us(now + ttl), now_us),
        )
        return claimed > 0

    async def save_callback_reply(self, key: str, reply: str) -> None:
        await self._connection.execute(
            "save_callback_reply", "UPDATE callback_keys SET reply = ? WHERE key = ?", (reply, key)
        )

    async def callback_reply(self, key: str, now: datetime) -> str | None:
        row = await self._connection.fetchone(
            "callback_reply",
            "SELECT reply FROM callback_keys WHERE key = ? AND expires_at > ?",
            (key, to_us(now)),
        )
        return None if row is None or row[0] is None else str(row[0])

    # -- retention -----------------------------------------------------------------

    async def prune(self, now: datetime, retention: timedelta) -> int:
        """Delete what can no longer be referred to; returns the rows deleted.

        * references resolved before ``now - retention``, with their
          sent-index rows, cards, sent messages and resolutions (same transaction, chunked);
        * resolutions decided before ``now - retention``;
        * callback keys whose ttl has run out;
        * silence records that ended (expired, or ran out) before
          ``now - retention``.

        The audit trail is kept: it is the record of who did what.
        """
        cutoff = to_us(now - retention)
        total = 0
        while True:
            async with self._connection.session("prune", write=True) as db:
                rows = await db.execute_fetchall(
                    "SELECT ref FROM alert_refs WHERE resolved_at < ? LIMIT ?", (cutoff, _PRUNE_CHUNK)
                )
                chosen = [int(row[0]) for row in rows]
                refs = dumps(chosen)
                chunk = 0
                for table in ("ref_sent", "cards", "sent_messages", "resolutions", "alert_refs"):
                    async with db.execute(
                        f"DELETE FROM {table} WHERE ref IN (SELECT value FROM json_each(?))", (refs,)
                    ) as cur:
                        chunk += cur.rowcount
            total += chunk
            if len(chosen) < _PRUNE_CHUNK:
                break
        async with self._connection.session("prune", write=True) as db:
            async with db.execute("DELETE FROM callback_keys WHERE expires_at <= ?", (to_us(now),)) as cur:
                total += cur.rowcount
            async with db.execute(
                "DELETE FROM silences WHERE MIN(ends_at, COALESCE(expired_at, ends_at)) < ?", (cutoff,)
            ) as cur:
                total += cur.rowcount
            async with db.execute("DELETE FROM resolutions WHERE decided_at < ?", (cutoff,)) as cur:
                total += cur.rowcount
        return total
