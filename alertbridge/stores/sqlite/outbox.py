"""The SQLite outbox: the default, single-process ``OutboxStore``.

Why it looks the way it does:

* **Durability first.** The webhook handler answers 200 only after
  ``enqueue`` returns, and Alertmanager will not resend an acknowledged
  notification. So every commit is fsynced (WAL + ``synchronous=FULL``): an
  acknowledged alert survives a power cut.
* **Group commit.** An fsync costs milliseconds; a burst of webhooks must not
  pay one each. ``enqueue`` hands its row to a single writer task, which
  inserts everything queued at that moment in one transaction and commits
  once. Either the whole batch is stored or none of it, and every caller of
  that batch learns which.
* **One connection, one lock.** aiosqlite runs every call on one thread, but
  awaits between statements let other coroutines slip their statements into
  an open transaction. All transactions and reads therefore run under one
  ``asyncio.Lock``, so a claim can never land inside (and be rolled back with)
  the writer's batch.
* **Errors are StoreErrors.** Any ``sqlite3.Error``/``OSError`` (locked, disk
  full, read-only) becomes ``StoreError`` with a short reason; the failed
  transaction is rolled back and the next operation simply tries again.

Timestamps are stored as integer microseconds since the Unix epoch (UTC):
exact round trips, cheap comparisons, and index-friendly. In the ``sqlite3``
shell, ``datetime(col / 1e6, 'unixepoch')`` shows them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.model import AlertGroup
from alertbridge.stores import (
    Delivery,
    DeliveryStatus,
    DigestPartRecord,
    Enqueued,
    NewDelivery,
    StoredDigest,
)
from alertbridge.stores.sqlite.db import (
    DECODE_ERRORS,
    SqliteConnection,
    Undecodable,
    decode_rows,
    dumps,
    from_us,
    reason,
    to_us,
    transaction,
)

logger = logging.getLogger(__name__)

# Each entry brings the schema from version ``index`` to ``index + 1``; the
# version lives in ``PRAGMA user_version``. Append, never edit: a database
# created by an older release replays only the entries it has not seen.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # AUTOINCREMENT: ids are shown to operators (list/retry) and in logs;
        # pruning sent rows must never let a new delivery reuse an old id.
        """
        CREATE TABLE deliveries (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            receiver        TEXT    NOT NULL,
            channel         TEXT    NOT NULL,
            recipients      TEXT    NOT NULL,  -- JSON, Recipients.to_dict()
            alert_group     TEXT    NOT NULL,  -- JSON, AlertGroup.to_dict()
            request_id      TEXT    NOT NULL,
            accepted_at     INTEGER NOT NULL,  -- µs since epoch, UTC
            status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'sent', 'dead')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            parts_sent      INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,  -- µs since epoch, UTC
            lease_until     INTEGER,           -- µs since epoch, UTC; NULL = unclaimed
            last_error      TEXT,
            finished_at     INTEGER            -- µs since epoch, UTC
        )
        """,
        # Claiming and next_due_at: pending rows in due order.
        "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at, id)",
        # list(status) newest first, count(status).
        "CREATE INDEX deliveries_status_id ON deliveries (status, id)",
        # Retention pruning of sent rows.
        "CREATE INDEX deliveries_finished ON deliveries (status, finished_at)",
    ),
    (
        # The same notification from several Alertmanager HA peers (or a
        # Grafana retry) within delivery.dedup_window is stored once.
        "ALTER TABLE deliveries ADD COLUMN dedup_key TEXT",
        "CREATE INDEX deliveries_dedup ON deliveries (receiver, dedup_key, accepted_at)",
    ),
    (
        # A recipient's backlog: pending rows of one receiver to the same
        # recipients, merged into digests under WeCom's rate limits.
        "CREATE INDEX deliveries_backlog ON deliveries (status, receiver, recipients)",
        # Sends counted against WeCom's per-member and per-robot limits (see
        # alertbridge.budget), so a restart knows the last hour's sends.
        """
        CREATE TABLE sends (
            budget_key TEXT    NOT NULL,
            sent_at    INTEGER NOT NULL  -- µs since epoch, UTC
        )
        """,
        "CREATE INDEX sends_at ON sends (sent_at)",
    ),
    (
        # /readyz writes one row here to prove the store takes writes.
        "CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL)",
    ),
    (
        # Digests are rendered once and kept until every part is sent, so a
        # crash between WeCom's answer and our bookkeeping re-sends the very
        # same bytes (which WeCom's duplicate check then hides).
        """
        CREATE TABLE digests (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            receiver   TEXT    NOT NULL,
            recipients TEXT    NOT NULL,  -- JSON, as deliveries.recipients
            parts      TEXT    NOT NULL,  -- JSON list of DigestPartRecord
            part_count INTEGER NOT NULL,
            parts_sent INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL   -- µs since epoch, UTC
        )
        """,
        "CREATE INDEX digests_open ON digests (receiver, recipients, parts_sent, part_count)",
        "ALTER TABLE deliveries ADD COLUMN digest_id INTEGER",
    ),
    (
        # Failed attempts since WeCom last accepted a part: the backoff's
        # exponent. An accepted part proves WeCom reachable, so it restarts.
        "ALTER TABLE deliveries ADD COLUMN failures_since_progress INTEGER NOT NULL DEFAULT 0",
    ),
    (
        # The part being sent, recorded before the send and cleared once WeCom
        # answered: still set after a crash, the part may have arrived, and a
        # robot (no duplicate check) re-sends it marked as a repeat.
        "ALTER TABLE deliveries ADD COLUMN sending_part INTEGER",
        "ALTER TABLE digests ADD COLUMN sending_part INTEGER",
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)


# Rows deleted per transaction when pruning, so a large backlog of sent rows
# never holds the lock long enough to stall webhook commits.
_PRUNE_CHUNK: Final = 1000

_COLUMNS: Final = (
    "id, receiver, channel, recipients, alert_group, request_id, accepted_at, status,"
    " attempts, parts_sent, next_attempt_at, last_error, finished_at, digest_id, failures_since_progress,"
    " sending_part"
)

_INSERT_ROWS: Final = (
    "INSERT INTO deliveries (receiver, channel, recipients, alert_group, request_id,"
    " accepted_at, next_attempt_at, dedup_key) VALUES"
)
# Event-loop turns the writer yields before collecting a batch.
_GATHER_TURNS: Final = 3

# Rows (or keys) per statement: 8 × 100 bound values stays far below every
# SQLite build's variable limit (999 in old ones).
_INSERT_CHUNK: Final = 100

# Dead-letters one delivery: (last_error, finished_at, id). The attempt
# that ended it counts, as the one that sent a delivery does.
_MARK_DEAD: Final = (
    "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_error = ?, finished_at = ?,"
    " lease_until = NULL WHERE id = ?"
)


def _to_delivery(row: Sequence[Any]) -> Delivery:
    """Decode one row selected with ``_COLUMNS``."""
    try:
        return Delivery(
            id=row[0],
            receiver=row[1],
            channel=row[2],
            recipients=Recipients.from_dict(json.loads(row[3])),
            group=AlertGroup.from_dict(json.loads(row[4])),
            request_id=row[5],
            accepted_at=from_us(row[6]),
            status=DeliveryStatus(row[7]),
            attempts=row[8],
            parts_sent=row[9],
            next_attempt_at=from_us(row[10]),
            last_error=row[11],
            finished_at=from_us(row[12]) if row[12] is not None else None,
            digest_id=row[13],
            failures_since_progress=row[14],
            sending_part=row[15],
        )
    except DECODE_ERRORS as exc:
        raise Undecodable(f"delivery {row[0]}", exc) from exc


def _part_to_json(part: DigestPartRecord) -> dict[str, Any]:
    return {
        "msgtype": part.msgtype,
        "content": part.content,
        "limit": part.limit,
        "finished": [[ref, list(ids)] for ref, ids in part.finished],
    }


def _part_from_json(data: dict[str, Any]) -> DigestPartRecord:
    return DigestPartRecord(
        msgtype=str(data["msgtype"]),
        content=str(data["content"]),
        limit=int(data["limit"]),
        finished=tuple((int(ref), tuple(int(i) for i in ids)) for ref, ids in data["finished"]),
    )


async def _decode_claimed(db: aiosqlite.Connection, rows: Iterable[Any], now_us: int) -> list[Delivery]:
    """The claimed rows as deliveries; a row this version cannot decode is
    dead-lettered in the claim's transaction instead of blocking the queue forever."""
    claimed: list[Delivery] = []
    for row in rows:
        try:
            claimed.append(_to_delivery(row))
        except Undecodable as exc:
            logger.error("dead-lettering: %s", exc)
            await db.execute(_MARK_DEAD, (str(exc), now_us, row[0]))
    return claimed


@dataclass(slots=True)
class _Pending:
    """One enqueue waiting for the writer: its row and its caller's future."""

    params: tuple[Any, ...]
    future: asyncio.Future[Enqueued]


class _Stop:
    """Queue sentinel: everything queued before it is drained, then the writer exits."""


_STOP: Final = _Stop()


def _fail(items: Iterable[_Pending], message: str) -> None:
    """Fail every caller of ``items`` still waiting with ``StoreError(message)``."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(StoreError(message))


class SqliteOutboxStore:
    """``OutboxStore`` on one SQLite file, for a single alertbridge process.

    Leases exist so a slow send is not claimed twice, but with one serving
    process any lease found when it starts belongs to a run that crashed, so
    the server calls ``release_leases()`` at start-up rather than waiting for
    them to expire. CLI tools (``outbox list``) open the same file without
    releasing anything. Do not point two serving processes at the same file.

    ``commits`` counts committed enqueue batches (group commits), so tests
    and metrics can see how well bursts are being batched.
    """

    def __init__(
        self,
        path: Path,
        *,
        batch_limit: int = 512,
        busy_timeout: timedelta = timedelta(seconds=5),
        dedup_window: timedelta = timedelta(0),
    ) -> None:
        if batch_limit < 1:
            raise ValueError("batch_limit must be at least 1")
        self.path = Path(path)
        self.batch_limit = batch_limit
        self.busy_timeout = busy_timeout
        # A delivery with the dedup_key of one accepted this recently is not
        # stored again; enqueue answers the earlier id. 0 turns it off.
        self.dedup_window = dedup_window
        self.commits = 0
        self.duplicates = 0
        self._connection = SqliteConnection(self.path, busy_timeout, foreign_keys=True)
        self._queue: asyncio.Queue[_Pending | _Stop] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._accepting = False

    @property
    def connection(self) -> SqliteConnection:
        """For the state store in the same file to share (see SqliteStateStore)."""
        return self._connection

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect, configure durability, migrate, start the writer."""
        if self._connection.is_open:
            return
        await self._connection.open(self._migrate)
        self._queue = asyncio.Queue()
        self._accepting = True
        self._writer = asyncio.create_task(self._run_writer(), name=f"outbox-writer:{self.path}")

    async def release_leases(self) -> int:
        """Free every lease; only for a serving process at start-up (see class doc)."""
        return await self._connection.execute(
            "release leases",
            "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL",
            durable=False,
        )

    async def close(self) -> None:
        """Commit every enqueue already accepted, then close the connection."""
        if not self._connection.is_open:
            return
        self._accepting = False
        if self._writer is not None:
            self._queue.put_nowait(_STOP)
            await self._writer
            self._writer = None
        await self._connection.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this alertbridge"
                f" supports ({SCHEMA_VERSION}); upgrade alertbridge"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # One transaction per step, user_version included (it is part of
            # the transactional file header): a step is applied fully or not.
            async with transaction(db):
                for statement in MIGRATIONS[target - 1]:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {target}")
            logger.info("migrated %s to schema version %d", self.path, target)

    # -- enqueue / group commit -------------------------------------------

    async def enqueue(self, delivery: NewDelivery) -> Enqueued:
        """Durably store ``delivery`` (group-committed with concurrent callers)."""
        if not self._accepting:
            raise StoreError("enqueue: store is not open")
        # Serialize here, in the caller: a bad value fails only this caller,
        # never the batch it would have joined.
        accepted = to_us(delivery.accepted_at)
        params = (
            delivery.receiver,
            delivery.channel,
            dumps(delivery.recipients.to_dict()),
            dumps(delivery.group.to_dict()),
            delivery.request_id,
            accepted,
            accepted,
            delivery.dedup_key if self.dedup_window else None,
        )
        for value in params:
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise StoreError(f"enqueue: value cannot be stored: {reason(exc)}") from None
        future: asyncio.Future[Enqueued] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(params, future))
        return await future

    async def _run_writer(self) -> None:
        """Commit queued enqueues in batches until told to stop."""
        batch: list[_Pending] = []
        try:
            while True:
                first = await self._queue.get()
                if isinstance(first, _Stop):
                    return
                # Let the requests already being handled reach their enqueue
                # first: a few turns of the event loop (microseconds when
                # idle) turn a burst into one commit instead of one each.
                for _ in range(_GATHER_TURNS):
                    await asyncio.sleep(0)
                batch = [first]
                stop = False
                while len(batch) < self.batch_limit:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if isinstance(item, _Stop):
                        stop = True
                        break
                    batch.append(item)
                await self._commit_batch(batch)
                batch = []
                if stop:
                    return
        finally:
            # Only reached with work left if the writer itself was cancelled:
            # nobody may wait forever on a future the writer will never set.
            leftovers = list(batch)
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if isinstance(item, _Pending):
                    leftovers.append(item)
            _fail(leftovers, "enqueue: store closed")

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        """Insert ``batch`` in one transaction; resolve every future either way.

        The statements work on the whole batch (one duplicate lookup, one
        multi-row insert), not row by row: every statement is a round trip
        to aiosqlite's thread, and under a burst those round trips, not the
        fsync, were what the webhooks waited for.
        """
        # A caller that gave up (cancelled) before we started need not be stored.
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        try:
            async with self._connection.session("enqueue", write=True) as db:
                ids = await self._insert_batch(db, [item.params for item in live])
        except StoreError as exc:
            _fail(live, str(exc))
            logger.error("outbox batch of %d not stored: %s", len(live), exc)
            return
        except Exception as exc:
            # A bug must not kill the writer (every later enqueue would hang):
            # fail this batch loudly and keep serving.
            logger.exception("outbox writer failed on a batch of %d", len(live))
            _fail(live, f"enqueue: {reason(exc)}")
            return
        self.commits += 1
        for item, delivery_id in zip(live, ids, strict=True):
            if not item.future.done():
                item.future.set_result(delivery_id)

    async def _insert_batch(self, db: aiosqlite.Connection, rows: list[tuple[Any, ...]]) -> list[Enqueued]:
        """Insert the rows that are not duplicates; every row's delivery id, in order.

        A row whose notification (receiver, dedup_key) was stored within the
        window — earlier, or by a row before it in this very batch, as when
        two HA peers' copies arrive together — gets that delivery's id.
        """
        earlier = await self._stored_within_window(db, rows)
        ids: list[int | None] = [None] * len(rows)
        first_in_batch: dict[tuple[str, str], int] = {}
        fresh: list[int] = []
        duplicates: set[int] = set()
        for index, row in enumerate(rows):
            receiver, accepted, key = row[0], row[5], row[7]
            if key is not None:
                since = accepted - self.dedup_window // timedelta(microseconds=1)
                found = [i for i, at in earlier.get((receiver, key), []) if at >= since]
                if found:
                    ids[index] = min(found)
                    self.duplicates += 1
                    duplicates.add(index)
                    continue
                if (receiver, key) in first_in_batch:
                    self.duplicates += 1
                    duplicates.add(index)
                    continue  # resolved to the first copy's id below
                first_in_batch[(receiver, key)] = index
            fresh.append(index)
        for start in range(0, len(fresh), _INSERT_CHUNK):
            chunk = fresh[start : start + _INSERT_CHUNK]
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            inserted = await db.execute_fetchall(
                f"{_INSERT_ROWS} {values} RETURNING id", [p for index in chunk for p in rows[index]]
            )
            # One statement inserts its rows in order, so their ids ascend in that order.
            for index, new_id in zip(chunk, sorted(int(r[0]) for r in inserted), strict=True):
                ids[index] = new_id
        for index, row in enumerate(rows):
            if ids[index] is None:
                ids[index] = ids[first_in_batch[(row[0], row[7])]]
        return [Enqueued(i, index in duplicates) for index, i in enumerate(ids) if i is not None]

    async def _stored_within_window(
        self, db: aiosqlite.Connection, rows: list[tuple[Any, ...]]
    ) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """(receiver, dedup_key) → [(id, accepted_at µs)] of stored rows the batch may duplicate."""
        by_receiver: dict[str, set[str]] = {}
        for row in rows:
            if row[7] is not None:
                by_receiver.setdefault(row[0], set()).add(row[7])
        since = min(row[5] for row in rows) - self.dedup_window // timedelta(microseconds=1)
        found: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for receiver, key_set in by_receiver.items():
            keys = sorted(key_set)
            for start in range(0, len(keys), _INSERT_CHUNK):
                chunk = keys[start : start + _INSERT_CHUNK]
                marks = ", ".join("?" * len(chunk))
                # Served by the deliveries_dedup index (receiver, dedup_key, accepted_at).
                stored = await db.execute_fetchall(
                    f"SELECT dedup_key, id, accepted_at FROM deliveries"
                    f" WHERE receiver = ? AND dedup_key IN ({marks}) AND accepted_at >= ?",
                    [receiver, *chunk, since],
                )
                for key, delivery_id, accepted in stored:
                    found.setdefault((receiver, key), []).append((int(delivery_id), int(accepted)))
        return found

    # -- dispatcher side ----------------------------------------------------

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        """Lease up to ``limit`` due pending deliveries, oldest first.

        One ``UPDATE … RETURNING`` picks and leases the rows atomically, so
        two claimers (even on two connections) never get the same row. A row
        this version cannot decode is dead-lettered in the same transaction
        instead of blocking the queue forever.
        """
        if limit <= 0:
            return []
        now_us = to_us(now)
        lease_us = to_us(now + lease)
        async with self._connection.session("claim_due", write=True, durable=False) as db:
            rows = await db.execute_fetchall(
                f"""
                UPDATE deliveries SET lease_until = ?
                WHERE id IN (
                    SELECT id FROM deliveries
                    WHERE status = 'pending' AND next_attempt_at <= ?
                      AND (lease_until IS NULL OR lease_until <= ?)
                    ORDER BY next_attempt_at, id
                    LIMIT ?
                )
                RETURNING {_COLUMNS}
                """,
                (lease_us, now_us, now_us, limit),
            )
            claimed = await _decode_claimed(db, rows, now_us)
        # RETURNING order is unspecified; the contract is oldest first.
        claimed.sort(key=lambda d: (d.next_attempt_at, d.id))
        return claimed

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending delivery can next be claimed.

        For an unleased row that is its ``next_attempt_at``; for a leased one
        the later of that and its lease expiry, so a dispatcher sleeping until
        this time also wakes for a lease that runs out.
        """
        rows = await self._connection.fetchall(
            "next_due_at",
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, next_attempt_at)))"
            " FROM deliveries WHERE status = 'pending'",
        )
        value = next(iter(rows))[0]
        return from_us(value) if value is not None else None

    async def count_backlog(self, receiver: str, recipients: Recipients, now: datetime) -> int:
        """Pending deliveries of ``receiver`` to exactly ``recipients`` that nobody holds a lease on."""
        row = await self._connection.fetchone(
            "count_backlog",
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND receiver = ? AND recipients = ?"
            " AND digest_id IS NULL AND (lease_until IS NULL OR lease_until <= ?)",
            (receiver, dumps(recipients.to_dict()), to_us(now)),
        )
        return int(row[0]) if row is not None else 0

    async def claim_backlog(
        self, receiver: str, recipients: Recipients, now: datetime, limit: int, lease: timedelta
    ) -> list[Delivery]:
        """Lease up to ``limit`` of that backlog, oldest first, due or not (they go out in a digest)."""
        if limit <= 0:
            return []
        now_us = to_us(now)
        async with self._connection.session("claim_backlog", write=True, durable=False) as db:
            rows = await db.execute_fetchall(
                f"""
                UPDATE deliveries SET lease_until = ?
                WHERE id IN (
                    SELECT id FROM deliveries
                    WHERE status = 'pending' AND receiver = ? AND recipients = ? AND digest_id IS NULL
                      AND (lease_until IS NULL OR lease_until <= ?)
                    ORDER BY accepted_at, id
                    LIMIT ?
                )
                RETURNING {_COLUMNS}
                """,
                (to_us(now + lease), receiver, dumps(recipients.to_dict()), now_us, limit),
            )
            claimed = await _decode_claimed(db, rows, now_us)
        claimed.sort(key=lambda d: (d.accepted_at, d.id))
        return claimed

    async def record_progress(self, delivery_id: int, parts_sent: int) -> None:
        """Remember how many parts WeCom accepted, so a retry never resends them
        (and restart the backoff: WeCom is reachable)."""
        async with self._connection.session("record_progress", write=True, durable=False) as db:
            await db.execute(
                "UPDATE deliveries SET parts_sent = ?, failures_since_progress = 0, sending_part = NULL"
                " WHERE id = ?",
                (parts_sent, delivery_id),
            )

    async def mark_sent(self, delivery_ids: int | Sequence[int], now: datetime) -> None:
        """Finish one delivery, or several at once, in one transaction."""
        ids = [delivery_ids] if isinstance(delivery_ids, int) else list(delivery_ids)
        async with self._connection.session("mark_sent", write=True, durable=False) as db:
            await db.executemany(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, finished_at = ?,"
                " lease_until = NULL, sending_part = NULL WHERE id = ?",
                [(to_us(now), delivery_id) for delivery_id in ids],
            )

    async def defer(self, delivery_ids: Sequence[int], until: datetime) -> None:
        """Hold deliveries back until ``until`` for WeCom's rate limits: not a failure, no attempt counted."""
        async with self._connection.session("defer", write=True, durable=False) as db:
            await db.executemany(
                "UPDATE deliveries SET next_attempt_at = MAX(next_attempt_at, ?), lease_until = NULL"
                " WHERE id = ? AND status = 'pending'",
                [(to_us(until), delivery_id) for delivery_id in delivery_ids],
            )

    async def create_digest(
        self, receiver: str, recipients: Recipients, parts: Sequence[DigestPartRecord], now: datetime
    ) -> StoredDigest:
        """Store a digest and tie its deliveries to it, in one transaction."""
        encoded = dumps([_part_to_json(part) for part in parts])
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
            "SELECT id, receiver, parts, parts_sent, sending_part FROM digests"
            " WHERE receiver = ? AND recipients = ? AND parts_sent < part_count ORDER BY id LIMIT 1",
            (receiver, dumps(recipients.to_dict())),
        )
        if row is None:
            return None
        try:
            parts = tuple(_part_from_json(part) for part in json.loads(row[2]))
        except DECODE_ERRORS as exc:
            raise StoreError(f"digest {row[0]} cannot be read: {exc}") from exc
        return StoredDigest(
            id=int(row[0]), receiver=str(row[1]), parts=parts, parts_sent=int(row[3]), sending_part=row[4]
        )

    async def claim_digest(self, digest_id: int, now: datetime, lease: timedelta) -> list[Delivery]:
        """Lease every pending delivery of a stored digest, oldest first.

        Leased or not: with one serving process, a lease on a digest's
        delivery is this process's, and resuming the digest is what it was for.
        """
        now_us = to_us(now)
        async with self._connection.session("claim_digest", write=True, durable=False) as db:
            rows = await db.execute_fetchall(
                f"UPDATE deliveries SET lease_until = ? WHERE digest_id = ? AND status = 'pending'"
                f" RETURNING {_COLUMNS}",
                (to_us(now + lease), digest_id),
            )
            claimed = await _decode_claimed(db, rows, now_us)
        claimed.sort(key=lambda d: (d.accepted_at, d.id))
        return claimed

    async def digest_progress(
        self, digest_id: int, parts_sent: int, finished: Sequence[int], now: datetime
    ) -> None:
        """Record a sent (or given-up) digest part and its finished deliveries at once
        (its send was counted before it was made: ``record_attempt``)."""
        async with self._connection.session("digest_progress", write=True, durable=False) as db:
            await db.execute(
                "UPDATE digests SET parts_sent = ?, sending_part = NULL WHERE id = ?", (parts_sent, digest_id)
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

    async def recent_sends(self, since: datetime) -> list[tuple[str, datetime]]:
        """Sends counted against rate limits after ``since``, oldest first."""
        rows = await self._connection.fetchall(
            "recent_sends",
            "SELECT budget_key, sent_at FROM sends WHERE sent_at > ? ORDER BY sent_at",
            (to_us(since),),
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
        ``part`` of the delivery or digest is on its way, in one transaction.
        ``part=None`` clears it: WeCom answered, the part did not arrive."""
        async with self._connection.session("record_attempt", write=True, durable=False) as db:
            if delivery_id is not None:
                await db.execute("UPDATE deliveries SET sending_part = ? WHERE id = ?", (part, delivery_id))
            if digest_id is not None:
                await db.execute("UPDATE digests SET sending_part = ? WHERE id = ?", (part, digest_id))
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

    async def reschedule(self, delivery_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed attempt and release the lease until ``next_attempt_at``."""
        await self._connection.execute(
            "reschedule",
            "UPDATE deliveries SET attempts = attempts + 1,"
            " failures_since_progress = failures_since_progress + 1, next_attempt_at = ?,"
            " last_error = ?, lease_until = NULL WHERE id = ?",
            (to_us(next_attempt_at), error, delivery_id),
            durable=False,
        )

    async def mark_dead(self, delivery_id: int, reason: str, now: datetime) -> None:
        await self._connection.execute(
            "mark_dead", _MARK_DEAD, (reason, to_us(now), delivery_id), durable=False
        )

    # -- operator side -------------------------------------------------------

    async def list(self, status: DeliveryStatus | None = None, limit: int = 100) -> list[Delivery]:
        """Newest first (by id, i.e. commit order).

        A row this version cannot decode is logged and left out rather than
        making the whole listing fail.
        """
        if status is None:
            rows = await self._connection.fetchall(
                "list", f"SELECT {_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = await self._connection.fetchall(
                "list",
                f"SELECT {_COLUMNS} FROM deliveries WHERE status = ? ORDER BY id DESC LIMIT ?",
                (DeliveryStatus(status).value, limit),
            )
        return decode_rows(rows, _to_delivery, "list")

    async def get(self, delivery_id: int) -> Delivery | None:
        """One delivery by id, for the CLI (``outbox retry`` says what became of it)."""
        row = await self._connection.fetchone(
            "get", f"SELECT {_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
        )
        rows = decode_rows([row] if row is not None else [], _to_delivery, "get")
        return rows[0] if rows else None

    async def retry(self, delivery_id: int, now: datetime) -> bool:
        """Make a dead or pending delivery due ``now`` with zero attempts.

        ``last_error`` and ``parts_sent`` are kept: the error is history for
        the operator, and parts WeCom already accepted must not be sent again.
        A lease still running is kept too, so an attempt in flight is not
        claimed a second time. Returns False for an unknown id — and for a
        sent delivery, which there is nothing to retry for.
        """
        now_us = to_us(now)
        changed = await self._connection.execute(
            "retry",
            "UPDATE deliveries SET status = 'pending', attempts = 0, failures_since_progress = 0,"
            " next_attempt_at = ?,"
            " finished_at = NULL,"
            " lease_until = CASE WHEN lease_until > ? THEN lease_until END"
            " WHERE id = ? AND status IN ('pending', 'dead')",
            (now_us, now_us, delivery_id),
        )
        return changed > 0

    async def probe(self, now: datetime) -> None:
        """Commit a one-row write: raises ``StoreError`` when the store cannot take writes."""
        await self._connection.execute(
            "probe", "INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (to_us(now),), durable=False
        )

    async def oldest_pending(self) -> datetime | None:
        """When the oldest pending delivery was accepted; None when nothing is pending."""
        row = await self._connection.fetchone(
            "oldest_pending", "SELECT MIN(accepted_at) FROM deliveries WHERE status = 'pending'"
        )
        return from_us(row[0]) if row is not None and row[0] is not None else None

    async def count(self, status: DeliveryStatus) -> int:
        rows = await self._connection.fetchall(
            "count", "SELECT COUNT(*) FROM deliveries WHERE status = ?", (DeliveryStatus(status).value,)
        )
        return int(next(iter(rows))[0])

    async def delete_finished(self, older_than: datetime) -> int:
        """Prune sent deliveries finished before ``older_than``; dead ones stay.

        Dead letters are kept for the operator to inspect and retry. Deletes
        run in chunks, each its own transaction, so webhook commits queued
        behind the lock wait for one chunk at most.
        """
        cutoff = to_us(older_than)
        await self._connection.execute(
            "delete_finished",
            "DELETE FROM digests WHERE parts_sent >= part_count AND created_at < ?",
            (cutoff,),
        )
        total = 0
        while True:
            deleted = await self._connection.execute(
                "delete_finished",
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
                " WHERE status = 'sent' AND finished_at < ? LIMIT ?)",
                (cutoff, _PRUNE_CHUNK),
            )
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total
