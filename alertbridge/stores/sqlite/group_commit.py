"""Group commit: many concurrent ``enqueue`` calls, one transaction and one fsync.

An fsync costs milliseconds; a burst of webhooks must not pay one each.
``enqueue`` hands its row to a single writer task, which inserts everything
queued at that moment in one transaction and commits once. Either the whole
batch is stored or none of it, and every caller of that batch learns which.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.stores.codec import dumps, to_us
from alertbridge.stores.outbox import Enqueued, NewDelivery
from alertbridge.stores.sqlite.db import SqliteConnection, reason

logger = logging.getLogger(__name__)

_INSERT_ROWS: Final = (
    "INSERT INTO deliveries (receiver, channel, recipients, alert_group, request_id,"
    " accepted_at, next_attempt_at, dedup_key) VALUES"
)
# Event-loop turns the writer yields before collecting a batch.
_GATHER_TURNS: Final = 3

# Rows (or keys) per statement: 8 × 100 bound values stays far below every
# SQLite build's variable limit (999 in old ones).
_INSERT_CHUNK: Final = 100


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


class GroupCommitWriter:
    """The outbox's single writer task and the queue that feeds it.

    ``commits`` counts committed batches and ``duplicates`` the enqueues
    answered with an earlier delivery's id, so tests and metrics can see how
    well bursts are batched and HA copies folded.
    """

    def __init__(
        self, connection: SqliteConnection, path: Path, *, batch_limit: int, dedup_window: timedelta
    ) -> None:
        if batch_limit < 1:
            raise ValueError("batch_limit must be at least 1")
        self.path = path
        self.batch_limit = batch_limit
        # A delivery with the dedup_key of one accepted this recently is not
        # stored again; enqueue answers the earlier id. 0 turns it off.
        self.dedup_window = dedup_window
        self.commits = 0
        self.duplicates = 0
        self._connection = connection
        self._queue: asyncio.Queue[_Pending | _Stop] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False

    def start(self) -> None:
        """Accept enqueues; the connection is open."""
        self._queue = asyncio.Queue()
        self._accepting = True
        self._task = asyncio.create_task(self._run_writer(), name=f"outbox-writer:{self.path}")

    async def stop(self) -> None:
        """Refuse new enqueues and commit every one already accepted."""
        self._accepting = False
        if self._task is not None:
            self._queue.put_nowait(_STOP)
            await self._task
            self._task = None

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
