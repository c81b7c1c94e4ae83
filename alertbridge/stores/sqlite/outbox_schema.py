"""The outbox's tables in SQLite: migrations, and dead-lettering rows a claim cannot decode.

Timestamps are stored as integer microseconds since the Unix epoch (UTC):
exact round trips, cheap comparisons, and index-friendly. In the ``sqlite3``
shell, ``datetime(col / 1e6, 'unixepoch')`` shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.stores.codec import Undecodable, to_delivery
from alertbridge.stores.outbox import Delivery
from alertbridge.stores.sqlite.db import transaction

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
        # alertbridge.delivery.budget), so a restart knows the last hour's sends.
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
    (
        # When that part was sent (µs since epoch, UTC): an app re-send inside
        # WeCom's duplicate-check interval is hidden if the first one arrived,
        # a later one is marked as a repeat instead.
        "ALTER TABLE deliveries ADD COLUMN sending_at INTEGER",
        "ALTER TABLE digests ADD COLUMN sending_at INTEGER",
    ),
    (
        # reserve_sends counts one key's sends in its window before taking a slot.
        "CREATE INDEX sends_key ON sends (budget_key, sent_at)",
    ),
    (
        # A one-off message (``alertbridge send``): JSON, OneOffMessage; NULL
        # for an alert group's delivery. Sent as stored, never in a digest.
        "ALTER TABLE deliveries ADD COLUMN oneoff TEXT",
    ),
    (
        # A claim brings the picked rows' digest siblings, and a digest's
        # bookkeeping finds its rows, by digest_id. Without this index each
        # of those statements walked every pending row: a claim under a
        # 20,000-row backlog cost milliseconds and starved the dispatcher
        # (bench/README.md, Phase 10). Partial: most rows are in no digest.
        "CREATE INDEX deliveries_digest ON deliveries (digest_id) WHERE digest_id IS NOT NULL",
    ),
    (
        # Retention pruning reads only finished rows: a pending row (every
        # new one) no longer gets an entry, one index write less per webhook.
        "DROP INDEX deliveries_finished",
        "CREATE INDEX deliveries_finished ON deliveries (status, finished_at) WHERE finished_at IS NOT NULL",
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)


# Dead-letters one delivery: (last_error, finished_at, id). The attempt
# that ended it counts, as the one that sent a delivery does.
MARK_DEAD: Final = (
    "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_error = ?, finished_at = ?,"
    " lease_until = NULL WHERE id = ?"
)


async def decode_claimed(db: aiosqlite.Connection, rows: Iterable[Any], now_us: int) -> list[Delivery]:
    """The claimed rows as deliveries; a row this version cannot decode is
    dead-lettered in the claim's transaction instead of blocking the queue forever."""
    claimed: list[Delivery] = []
    for row in rows:
        try:
            claimed.append(to_delivery(row))
        except Undecodable as exc:
            logger.error("dead-lettering: %s", exc)
            await db.execute(MARK_DEAD, (str(exc), now_us, row[0]))
    return claimed


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Bring the outbox's tables of ``path`` to ``SCHEMA_VERSION``; refuse a newer file."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this alertbridge"
            f" supports ({SCHEMA_VERSION}); upgrade alertbridge"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # One transaction per step, user_version included (it is part of
        # the transactional file header): a step is applied fully or not.
        async with transaction(db):
            for statement in MIGRATIONS[target - 1]:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {target}")
        logger.info("migrated %s to schema version %d", path, target)
