"""The SQLite outbox's group commit: one transaction and one fsync per burst.

The batching is backend-neutral (``alertbridge.stores.group_commit``); here
is how SQLite stores a batch: one dedup lookup for the whole batch and
multi-row inserts.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.metrics import Metrics
from alertbridge.stores.codec import dumps, oneoff_to_text, to_us
from alertbridge.stores.group_commit import GroupCommit
from alertbridge.stores.outbox import Enqueued, NewDelivery
from alertbridge.stores.sqlite.db import SqliteConnection, reason

logger = logging.getLogger(__name__)

_INSERT_ROWS: Final = (
    "INSERT INTO deliveries (receiver, channel, recipients, alert_group, request_id,"
    " accepted_at, next_attempt_at, dedup_key, oneoff) VALUES"
)
# Rows (or keys) per statement: 9 × 100 bound values stays far below every
# SQLite build's variable limit (999 in old ones).
_INSERT_CHUNK: Final = 100


class GroupCommitWriter:
    """The SQLite outbox's group commit (``alertbridge.stores.group_commit``)
    with its dedup-window lookup.

    Committed batches are counted on ``metrics`` (the serving process's;
    the CLI passes none) as ``alertbridge_outbox_group_commits_total``, so an
    operator sees how well bursts are batched. Enqueues answered with an
    earlier delivery's id say so (``Enqueued.duplicate``); the webhook
    handler counts those as webhooks with outcome ``duplicate``.
    """

    def __init__(
        self,
        connection: SqliteConnection,
        path: Path,
        *,
        batch_limit: int,
        dedup_window: timedelta,
        metrics: Metrics | None = None,
    ) -> None:
        self.path = path
        # A delivery with the dedup_key of one accepted this recently is not
        # stored again; enqueue answers the earlier id. 0 turns it off.
        self.dedup_window = dedup_window
        self._connection = connection
        self._group = GroupCommit(str(path), self._commit_batch, batch_limit=batch_limit, metrics=metrics)

    def start(self) -> None:
        """Accept enqueues; the connection is open."""
        self._group.start()

    async def stop(self) -> None:
        """Refuse new enqueues and commit every one already accepted."""
        await self._group.stop()

    async def enqueue(self, delivery: NewDelivery) -> Enqueued:
        """Durably store ``delivery`` (group-committed with concurrent callers)."""
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
            oneoff_to_text(delivery.oneoff),
        )
        for value in params:
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise StoreError(f"enqueue: value cannot be stored: {reason(exc)}") from None
        return await self._group.submit(params)

    async def _commit_batch(self, rows: list[tuple[Any, ...]]) -> list[Enqueued]:
        """Insert ``rows`` in one transaction.

        The statements work on the whole batch (one duplicate lookup, one
        multi-row insert), not row by row: every statement is a round trip
        to aiosqlite's thread, and under a burst those round trips, not the
        fsync, were what the webhooks waited for.
        """
        async with self._connection.session("enqueue", write=True) as db:
            return await self._insert_batch(db, rows)

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
                    duplicates.add(index)
                    continue
                if (receiver, key) in first_in_batch:
                    duplicates.add(index)
                    continue  # resolved to the first copy's id below
                first_in_batch[(receiver, key)] = index
            fresh.append(index)
        for start in range(0, len(fresh), _INSERT_CHUNK):
            chunk = fresh[start : start + _INSERT_CHUNK]
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
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
