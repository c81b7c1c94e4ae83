"""How the PostgreSQL outbox stores webhooks: group commit, and HA copies stored once.

Concurrent enqueues share one transaction (``alertbridge.stores.group_commit``):
one WAL flush per burst, and one connection of the pool instead of one per
webhook. A batch takes its delivery ids from the sequence in one statement,
claims its dedup keys in one more, and inserts its rows in a third: a
statement per webhook (the key claim, once) cost the PostgreSQL ingest a
round trip per row (Phase 10).

Alertmanager's HA peers send each notification from every peer, possibly to
two replicas at the same moment. Each copy claims the (receiver, dedup_key)
row of ``dedup_keys`` inside the batch's transaction: a copy whose key is
held by another replica's uncommitted batch waits for it, then finds the key
live and gets that delivery's id. Batches claim their keys in sorted order,
so two replicas' batches never wait on each other in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from alertbridge.errors import StoreError
from alertbridge.metrics import Metrics
from alertbridge.stores.codec import dumps, oneoff_to_text, to_us
from alertbridge.stores.group_commit import GroupCommit
from alertbridge.stores.outbox import Enqueued, NewDelivery
from alertbridge.stores.postgres.db import Connection, PostgresDatabase

_NEXT_IDS: Final = "SELECT nextval(pg_get_serial_sequence('deliveries', 'id')) FROM generate_series(1, $1)"

_INSERT: Final = (
    "INSERT INTO deliveries (id, receiver, channel, recipients, alert_group, request_id,"
    " accepted_at, next_attempt_at, oneoff)"
    " SELECT id, receiver, channel, recipients, alert_group, request_id, accepted_at, accepted_at, oneoff"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],"
    " $8::text[])"
    " AS r(id, receiver, channel, recipients, alert_group, request_id, accepted_at, oneoff)"
)

# Each key of a batch (one row per key; array order is the claim order): take
# it, or take it over when its delivery is older than the window ($5, in µs);
# the keys that come back are this batch's, a key not back is held by a live delivery.
_CLAIM_KEYS: Final = (
    "INSERT INTO dedup_keys AS k (receiver, dedup_key, delivery_id, accepted_at)"
    " SELECT receiver, dedup_key, delivery_id, accepted_at"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])"
    " WITH ORDINALITY AS r(receiver, dedup_key, delivery_id, accepted_at, n) ORDER BY n"
    " ON CONFLICT (receiver, dedup_key) DO UPDATE"
    " SET delivery_id = excluded.delivery_id, accepted_at = excluded.accepted_at"
    " WHERE k.accepted_at < excluded.accepted_at - $5::bigint RETURNING receiver, dedup_key"
)

_KEY_OWNERS: Final = (
    "SELECT k.receiver, k.dedup_key, k.delivery_id FROM dedup_keys AS k"
    " JOIN unnest($1::text[], $2::text[]) AS r(receiver, dedup_key) USING (receiver, dedup_key)"
)


@dataclass(frozen=True, slots=True)
class _Row:
    """A delivery serialized in its caller, ready for a batch."""

    receiver: str
    channel: str
    recipients: str
    group: str
    request_id: str
    accepted_at: int
    dedup_key: str | None
    oneoff: str | None


def _storable(value: str) -> str:
    """``value`` if PostgreSQL text can hold it (UTF-8, no NUL); else a StoreError for this caller only."""
    if "\x00" in value:
        raise StoreError("enqueue: value cannot be stored: NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"enqueue: value cannot be stored: {exc.reason}") from None
    return value


class PostgresEnqueue:
    """The PostgreSQL outbox's writer: ``enqueue`` → batch → one transaction.

    Committed batches are counted on ``metrics``; an enqueue answered with an
    earlier delivery's id says so (``Enqueued.duplicate``).
    """

    def __init__(
        self,
        database: PostgresDatabase,
        *,
        dedup_window: timedelta,
        batch_limit: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.dedup_window = dedup_window
        self._db = database
        self._group = GroupCommit("postgresql", self._commit_batch, batch_limit=batch_limit, metrics=metrics)

    def start(self) -> None:
        self._group.start()

    async def stop(self) -> None:
        """Refuse new enqueues and commit every one already accepted."""
        await self._group.stop()

    async def enqueue(self, delivery: NewDelivery) -> Enqueued:
        # Serialized here, in the caller: a bad value fails only this caller.
        row = _Row(
            receiver=_storable(delivery.receiver),
            channel=_storable(delivery.channel),
            recipients=_storable(dumps(delivery.recipients.to_dict())),
            group=_storable(dumps(delivery.group.to_dict())),
            request_id=_storable(delivery.request_id),
            accepted_at=to_us(delivery.accepted_at),
            dedup_key=_storable(delivery.dedup_key) if delivery.dedup_key and self.dedup_window else None,
            oneoff=None if (text := oneoff_to_text(delivery.oneoff)) is None else _storable(text),
        )
        return await self._group.submit(row)

    async def _commit_batch(self, rows: list[_Row]) -> list[Enqueued]:
        async with self._db.transaction("enqueue") as conn:
            ids = [int(r[0]) for r in await conn.fetch(_NEXT_IDS, len(rows))]
            earlier = await self._earlier_copies(conn, rows, ids)
            fresh = [i for i in range(len(rows)) if i not in earlier]
            if fresh:
                await conn.execute(
                    _INSERT,
                    [ids[i] for i in fresh],
                    [rows[i].receiver for i in fresh],
                    [rows[i].channel for i in fresh],
                    [rows[i].recipients for i in fresh],
                    [rows[i].group for i in fresh],
                    [rows[i].request_id for i in fresh],
                    [rows[i].accepted_at for i in fresh],
                    [rows[i].oneoff for i in fresh],
                )
        return [
            Enqueued(earlier[i], duplicate=True) if i in earlier else Enqueued(ids[i])
            for i in range(len(rows))
        ]

    async def _earlier_copies(self, conn: Connection, rows: list[_Row], ids: list[int]) -> dict[int, int]:
        """Row index → the delivery id of its copy stored within the window, for the rows that have one.

        All keys of the batch are claimed in one statement, in sorted order,
        so two replicas' batches never wait on each other in a cycle. A copy
        earlier in this very batch counts too: only the first copy of a key
        claims it, the others are duplicates of whatever that claim found.
        """
        keys = {i: (row.receiver, row.dedup_key) for i, row in enumerate(rows) if row.dedup_key is not None}
        first: dict[tuple[str, str], int] = {}
        for i, key in keys.items():
            first.setdefault(key, i)
        if not first:
            return {}
        claimers = [first[key] for key in sorted(first)]
        claimed = await conn.fetch(
            _CLAIM_KEYS,
            [rows[i].receiver for i in claimers],
            [rows[i].dedup_key for i in claimers],
            [ids[i] for i in claimers],
            [rows[i].accepted_at for i in claimers],
            self.dedup_window // timedelta(microseconds=1),
        )
        held = set(first) - {(r[0], r[1]) for r in claimed}
        owners: dict[tuple[str, str], int] = {}
        if held:
            found = await conn.fetch(_KEY_OWNERS, [k[0] for k in held], [k[1] for k in held])
            owners = {(r[0], r[1]): int(r[2]) for r in found}
        earlier: dict[int, int] = {}
        for i, key in keys.items():
            if key in held:
                # Its conflicting row stays locked until we commit, so it is there.
                earlier[i] = owners[key]
            elif first[key] != i:
                earlier[i] = ids[first[key]]
        return earlier
