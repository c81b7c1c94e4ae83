"""The state store's tables in SQLite: its own schema version and migrations.

The outbox owns ``PRAGMA user_version``; this component keeps its version in
``schema_versions`` (one row per component) and never touches the outbox's
tables.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.stores.sqlite.db import transaction

logger = logging.getLogger(__name__)

# The row of ``schema_versions`` this store owns.
COMPONENT: Final = "state"

# The columns of alert_refs in schema version 2, copied by the step to 3.
_V2_REF_COLUMNS: Final = (
    "ref, receiver, source, group_key, external_url, title, alerts, recipients, firing,"
    " created_at, updated_at, resolved_at, ack_user, ack_at, last_delivery, last_suppressed"
)

# Each entry brings this component from version ``index`` to ``index + 1``.
# Append, never edit: an older database replays only the steps it lacks.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # AUTOINCREMENT: numbers are typed by users and sit in old messages;
        # a pruned reference's number must never name another group.
        """
        CREATE TABLE alert_refs (
            ref          INTEGER PRIMARY KEY AUTOINCREMENT,
            receiver     TEXT    NOT NULL,
            source       TEXT    NOT NULL,
            group_key    TEXT    NOT NULL,
            external_url TEXT    NOT NULL,
            title        TEXT    NOT NULL,
            alerts       TEXT    NOT NULL,  -- JSON [{fingerprint, labels, firing}]
            recipients   TEXT    NOT NULL,  -- JSON, Recipients.to_dict()
            firing       INTEGER NOT NULL CHECK (firing IN (0, 1)),
            created_at   INTEGER NOT NULL,  -- µs since epoch, UTC
            updated_at   INTEGER NOT NULL,
            resolved_at  INTEGER,           -- NULL while firing
            ack_user     TEXT,              -- both NULL or both set
            ack_at       INTEGER,
            UNIQUE (receiver, group_key)
        )
        """,
        "CREATE INDEX alert_refs_resolved ON alert_refs (resolved_at) WHERE resolved_at IS NOT NULL",
        "CREATE INDEX alert_refs_updated ON alert_refs (updated_at, ref)",
        # Who was sent which reference, and when last: `ack` without a number
        # and `alerts` answer from here.
        """
        CREATE TABLE ref_sent (
            user_id TEXT    NOT NULL,
            ref     INTEGER NOT NULL,
            sent_at INTEGER NOT NULL,
            PRIMARY KEY (user_id, ref)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX ref_sent_user_time ON ref_sent (user_id, sent_at, ref)",
        "CREATE INDEX ref_sent_ref ON ref_sent (ref)",
        """
        CREATE TABLE callback_keys (
            key        TEXT    PRIMARY KEY,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX callback_keys_expires ON callback_keys (expires_at)",
        # ref is a plain number: a silence can outlive its reference.
        """
        CREATE TABLE silences (
            silence_id TEXT    PRIMARY KEY,
            silencer   TEXT    NOT NULL,
            ref        INTEGER,
            created_by TEXT    NOT NULL,
            ends_at    INTEGER NOT NULL,
            matchers   TEXT    NOT NULL,
            created_at INTEGER NOT NULL,
            via_ack    INTEGER NOT NULL CHECK (via_ack IN (0, 1)),
            expired_at INTEGER
        )
        """,
        "CREATE INDEX silences_ref ON silences (ref, ends_at)",
        "CREATE INDEX silences_active ON silences (ends_at) WHERE expired_at IS NULL",
        # AUTOINCREMENT: audit ids are cited by operators and never reused.
        """
        CREATE TABLE audit (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            at         INTEGER NOT NULL,
            user_id    TEXT    NOT NULL,
            action     TEXT    NOT NULL,
            ref        INTEGER,
            result     TEXT    NOT NULL,
            detail     TEXT    NOT NULL,
            silence_id TEXT
        )
        """,
        "CREATE INDEX audit_at ON audit (at, id)",
        """
        CREATE TABLE cards (
            task_id          TEXT    PRIMARY KEY,
            ref              INTEGER NOT NULL,
            app              TEXT    NOT NULL,
            users            TEXT    NOT NULL,  -- JSON list
            response_code    TEXT,
            response_code_at INTEGER
        )
        """,
        "CREATE INDEX cards_ref ON cards (ref)",
    ),
    (
        # The delivery last recorded against a reference and the verdict it
        # got: a retry of that delivery must get the same verdict, not be
        # taken for an unchanged repeat of itself.
        "ALTER TABLE alert_refs ADD COLUMN last_delivery INTEGER",
        "ALTER TABLE alert_refs ADD COLUMN last_suppressed INTEGER NOT NULL DEFAULT 0",
    ),
    (
        # References are keyed on the sender too (alertbridge.senders): an
        # Alertmanager's and a Grafana's `{}:{}` group on one receiver shared
        # one reference and its ack. SQLite cannot drop the old UNIQUE
        # constraint, so the table is rebuilt. Existing rows get cluster ''
        # (unknown); the first notification from their source claims them.
        """
        CREATE TABLE alert_refs_v3 (
            ref             INTEGER PRIMARY KEY AUTOINCREMENT,
            receiver        TEXT    NOT NULL,
            source          TEXT    NOT NULL,
            cluster         TEXT    NOT NULL DEFAULT '',
            group_key       TEXT    NOT NULL,
            external_url    TEXT    NOT NULL,
            title           TEXT    NOT NULL,
            alerts          TEXT    NOT NULL,
            recipients      TEXT    NOT NULL,
            firing          INTEGER NOT NULL CHECK (firing IN (0, 1)),
            created_at      INTEGER NOT NULL,
            updated_at      INTEGER NOT NULL,
            resolved_at     INTEGER,
            ack_user        TEXT,
            ack_at          INTEGER,
            last_delivery   INTEGER,
            last_suppressed INTEGER NOT NULL DEFAULT 0,
            UNIQUE (receiver, source, cluster, group_key)
        )
        """,
        f"INSERT INTO alert_refs_v3 ({_V2_REF_COLUMNS}) SELECT {_V2_REF_COLUMNS} FROM alert_refs",
        # Carry the AUTOINCREMENT high-water mark over: numbers of pruned
        # references must stay unused.
        "DELETE FROM sqlite_sequence WHERE name = 'alert_refs_v3'",
        "UPDATE sqlite_sequence SET name = 'alert_refs_v3' WHERE name = 'alert_refs'",
        "DROP TABLE alert_refs",
        "ALTER TABLE alert_refs_v3 RENAME TO alert_refs",
        "CREATE INDEX alert_refs_resolved ON alert_refs (resolved_at) WHERE resolved_at IS NOT NULL",
        "CREATE INDEX alert_refs_updated ON alert_refs (updated_at, ref)",
    ),
    (
        # The resolution work of resolved deliveries (cards turned "Resolved"):
        # recorded on the send path, done by the upkeep, its outcome read by
        # the delivery when claimed again (alertbridge.delivery.resolution).
        """
        CREATE TABLE resolutions (
            delivery_id  INTEGER PRIMARY KEY,
            ref          INTEGER NOT NULL,
            receiver     TEXT    NOT NULL,
            requested_at INTEGER NOT NULL,
            state        TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
            decided_at   INTEGER,
            held_until   INTEGER            -- an upkeep is doing it until then
        )
        """,
        "CREATE INDEX resolutions_pending ON resolutions (requested_at, delivery_id) WHERE state = 'pending'",
        "CREATE INDEX resolutions_ref ON resolutions (ref)",
        "CREATE INDEX resolutions_decided ON resolutions (decided_at) WHERE decided_at IS NOT NULL",
    ),
    (
        # Messages sent under a msgid for receivers with on_resolve = "recall":
        # the group's resolution recalls them (a row is deleted when taken).
        """
        CREATE TABLE sent_messages (
            msgid   TEXT    PRIMARY KEY,
            ref     INTEGER NOT NULL,
            app     TEXT    NOT NULL,
            sent_at INTEGER NOT NULL
        )
        """,
        "CREATE INDEX sent_messages_ref ON sent_messages (ref, sent_at)",
    ),
    (
        # The passive reply a callback was answered with, for WeCom's retries of it.
        "ALTER TABLE callback_keys ADD COLUMN reply TEXT",
    ),
    (
        # Files members send to an app (a screenshot replied to an alert), one
        # per audit row that records it; kept as long as the audit trail.
        """
        CREATE TABLE audit_attachments (
            audit_id     INTEGER PRIMARY KEY,
            kind         TEXT    NOT NULL,
            filename     TEXT    NOT NULL,
            content_type TEXT    NOT NULL,
            media_id     TEXT    NOT NULL,
            data         BLOB    NOT NULL
        )
        """,
        # latest_audit_ref: a member's most recent action.
        "CREATE INDEX audit_user ON audit (user_id, at, id)",
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Apply missing steps, one transaction each.

    The version is read inside ``BEGIN IMMEDIATE``, so a server and a
    CLI opening a fresh file at the same moment cannot both apply a step.
    """
    while True:
        async with transaction(db):
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            async with db.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (COMPONENT,)
            ) as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: {COMPONENT} schema version {version} is newer than this"
                    f" alertbridge supports ({SCHEMA_VERSION}); upgrade alertbridge"
                )
            if version == SCHEMA_VERSION:
                return  # up to date; leaving the block commits
            for statement in MIGRATIONS[version]:
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (COMPONENT, version + 1),
            )
        logger.info("migrated %s (%s) to schema version %d", path, COMPONENT, version + 1)
