"""The SQLite ``StateStore``: references, acks, silences, callback dedup,
cards and the audit trail, in the same file as the outbox.

Why it looks the way it does:

* **Same file, own schema version.** One file is one thing to back up, and
  the outbox owns ``PRAGMA user_version``; this store therefore keeps its
  version in ``schema_versions`` (one row per component) and never touches
  the outbox's tables. Each store has its own connection; SQLite's file lock
  (with ``busy_timeout``) serializes their writes.
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

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

import aiosqlite

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.model import AlertGroup, Status
from alertbridge.stores.sqlite.db import (
    DECODE_ERRORS,
    SqliteConnection,
    Undecodable,
    decode_rows,
    dumps,
    from_us,
    to_us,
    transaction,
)
from alertbridge.stores.state import (
    Ack,
    AlertRef,
    AuditEntry,
    CardRecord,
    RefAlert,
    RefUpdate,
    SilenceRecord,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

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
)

SCHEMA_VERSION: Final = len(MIGRATIONS)

TITLE_MAX: Final = 80

# References deleted per prune transaction: a large backlog never holds the
# write lock long enough to stall webhook commits on the outbox connection.
_PRUNE_CHUNK: Final = 500


_REF_FIELDS: Final = (
    "ref",
    "receiver",
    "source",
    "group_key",
    "external_url",
    "title",
    "alerts",
    "recipients",
    "firing",
    "created_at",
    "updated_at",
    "resolved_at",
    "ack_user",
    "ack_at",
    "cluster",
)
_REF_COLUMNS: Final = ", ".join(_REF_FIELDS)
_R_REF_COLUMNS: Final = ", ".join(f"r.{name}" for name in _REF_FIELDS)

_SILENCE_COLUMNS: Final = (
    "silence_id, silencer, ref, created_by, ends_at, matchers, created_at, via_ack, expired_at"
)
_CARD_COLUMNS: Final = "task_id, ref, app, users, response_code, response_code_at"
_AUDIT_COLUMNS: Final = "id, at, user_id, action, ref, result, detail, silence_id"


def ref_title(group: AlertGroup) -> str:
    """A short name for replies (``#27 HighCPU``).

    The common ``alertname`` says what fires; without one (a group mixing
    alerts) the group labels say what the group is; the group key is the
    last resort because it is long and unreadable.
    """
    title = group.common_labels.get("alertname", "")
    if not title:
        names = {alert.labels.get("alertname", "") for alert in group.alerts}
        if len(names) == 1:
            title = names.pop()
    if not title and group.group_labels:
        title = ", ".join(f"{key}={value}" for key, value in sorted(group.group_labels.items()))
    if not title:
        title = group.group_key
    if len(title) > TITLE_MAX:
        title = title[: TITLE_MAX - 1] + "…"
    return title


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(mapping.items())))


def _us_or_none(value: datetime | None) -> int | None:
    return to_us(value) if value is not None else None


def _dt_or_none(value: int | None) -> datetime | None:
    return from_us(value) if value is not None else None


def _alerts_json(group: AlertGroup) -> str:
    return dumps(
        [
            {
                "fingerprint": alert.fingerprint,
                "labels": dict(alert.labels),
                "firing": alert.status is Status.FIRING,
            }
            for alert in group.alerts
        ]
    )


def _decode_alerts(text: str) -> tuple[RefAlert, ...]:
    return tuple(
        RefAlert(
            fingerprint=str(item["fingerprint"]),
            labels=_frozen({str(k): str(v) for k, v in item["labels"].items()}),
            firing=bool(item["firing"]),
        )
        for item in json.loads(text)
    )


def _to_ref(row: Sequence[Any]) -> AlertRef:
    """Decode one row selected with ``_REF_COLUMNS``."""
    try:
        ack = Ack(user=row[12], at=from_us(row[13])) if row[12] is not None else None
        return AlertRef(
            ref=row[0],
            receiver=row[1],
            source=row[2],
            group_key=row[3],
            external_url=row[4],
            title=row[5],
            alerts=_decode_alerts(row[6]),
            recipients=Recipients.from_dict(json.loads(row[7])),
            firing=bool(row[8]),
            created_at=from_us(row[9]),
            updated_at=from_us(row[10]),
            resolved_at=_dt_or_none(row[11]),
            ack=ack,
            cluster=row[14],
        )
    except DECODE_ERRORS as exc:
        raise Undecodable(f"reference #{row[0]}", exc) from exc


def _to_silence(row: Sequence[Any]) -> SilenceRecord:
    return SilenceRecord(
        silence_id=row[0],
        silencer=row[1],
        ref=row[2],
        created_by=row[3],
        ends_at=from_us(row[4]),
        matchers=row[5],
        created_at=from_us(row[6]),
        via_ack=bool(row[7]),
        expired_at=_dt_or_none(row[8]),
    )


def _to_card(row: Sequence[Any]) -> CardRecord:
    try:
        users = tuple(str(u) for u in json.loads(row[3]))
    except DECODE_ERRORS as exc:
        raise Undecodable(f"card {row[0]}", exc) from exc
    return CardRecord(
        task_id=row[0],
        ref=row[1],
        app=row[2],
        users=users,
        response_code=row[4],
        response_code_at=_dt_or_none(row[5]),
    )


def _to_audit(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        id=row[0],
        at=from_us(row[1]),
        user=row[2],
        action=row[3],
        ref=row[4],
        result=row[5],
        detail=row[6],
        silence_id=row[7],
    )


def _decode_one(row: Sequence[Any] | None, decode: Callable[[Sequence[Any]], _T]) -> _T | None:
    """Decode a single row asked for by key; an unreadable one is a StoreError."""
    if row is None:
        return None
    try:
        return decode(row)
    except Undecodable as exc:
        raise StoreError(str(exc)) from exc


class SqliteStateStore:
    """``StateStore`` on one SQLite file (normally the outbox's file).

    Like the outbox, it is meant for a single serving process; CLI tools may
    open the same file alongside it (``list_refs``, ``list_audit``).
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
        self._owns_connection = connection is None
        self._connection = connection if connection is not None else SqliteConnection(self.path, busy_timeout)

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect (unless sharing an open connection), create or migrate this store's tables."""
        if self._connection.is_open:
            await self._connection.migrate(self._migrate)
        else:
            await self._connection.open(self._migrate)

    async def close(self) -> None:
        """Close the connection, unless it is shared (its owner closes it)."""
        if self._owns_connection:
            await self._connection.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
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
                        f"{self.path}: {COMPONENT} schema version {version} is newer than this"
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
            logger.info("migrated %s (%s) to schema version %d", self.path, COMPONENT, version + 1)

    @staticmethod
    async def _fetch_ref(db: aiosqlite.Connection, ref: int) -> AlertRef | None:
        async with db.execute(f"SELECT {_REF_COLUMNS} FROM alert_refs WHERE ref = ?", (ref,)) as cur:
            row = await cur.fetchone()
        return _decode_one(row, _to_ref)

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
        alerts = _alerts_json(group)
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
                    old_fps = {a.fingerprint for a in _decode_alerts(row[1]) if a.firing}
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

    async def list_refs(self, limit: int) -> list[AlertRef]:
        """Most recently notified first, for the CLI."""
        rows = await self._connection.fetchall(
            "list_refs",
            f"SELECT {_REF_COLUMNS} FROM alert_refs ORDER BY updated_at DESC, ref DESC LIMIT ?",
            (limit,),
        )
        return decode_rows(rows, _to_ref, "list_refs")

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
            f"SELECT {_R_REF_COLUMNS} FROM ref_sent s JOIN alert_refs r ON r.ref = s.ref"
            f" WHERE s.user_id = ?{firing_clause}"
            " ORDER BY s.sent_at DESC, s.ref DESC LIMIT ?",
            (user, limit),
        )
        return decode_rows(rows, _to_ref, op)

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
            " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at"
            " WHERE callback_keys.expires_at <= ?",
            (key, to_us(now + ttl), now_us),
        )
        return claimed > 0

    # -- silences ----------------------------------------------------------------

    async def add_silence(self, record: SilenceRecord) -> None:
        """Store ``record``; the same ``silence_id`` again replaces it.

        Replacing rather than failing makes a retried call harmless, and a
        silencer that updates a silence in place returns the same id.
        """
        await self._connection.execute(
            "add_silence",
            f"INSERT INTO silences ({_SILENCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (silence_id) DO UPDATE SET silencer = excluded.silencer,"
            " ref = excluded.ref, created_by = excluded.created_by, ends_at = excluded.ends_at,"
            " matchers = excluded.matchers, created_at = excluded.created_at,"
            " via_ack = excluded.via_ack, expired_at = excluded.expired_at",
            (
                record.silence_id,
                record.silencer,
                record.ref,
                record.created_by,
                to_us(record.ends_at),
                record.matchers,
                to_us(record.created_at),
                int(record.via_ack),
                _us_or_none(record.expired_at),
            ),
        )

    async def replace_silence_id(self, old_id: str, new_id: str, ends_at: datetime) -> None:
        """The silencer re-created (or extended) ``old_id`` as ``new_id``.

        Everything else (creator, reference, matchers, ``expired_at``) is
        kept. An unknown ``old_id`` is a no-op, so a retry after a commit
        whose answer was lost is harmless.
        """
        await self._connection.execute(
            "replace_silence_id",
            "UPDATE silences SET silence_id = ?, ends_at = ? WHERE silence_id = ?",
            (new_id, to_us(ends_at), old_id),
        )

    async def mark_silence_expired(self, silence_id: str, now: datetime) -> None:
        """Record when the silence was expired; the first time counts."""
        await self._connection.execute(
            "mark_silence_expired",
            "UPDATE silences SET expired_at = ? WHERE silence_id = ? AND expired_at IS NULL",
            (to_us(now), silence_id),
        )

    async def get_silence(self, silence_id: str) -> SilenceRecord | None:
        row = await self._connection.fetchone(
            "get_silence", f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE silence_id = ?", (silence_id,)
        )
        return _to_silence(row) if row is not None else None

    async def silences_for_ref(self, ref: int, *, active_at: datetime) -> list[SilenceRecord]:
        """Silences of ``ref`` not expired and still running at ``active_at``, oldest first."""
        rows = await self._connection.fetchall(
            "silences_for_ref",
            f"SELECT {_SILENCE_COLUMNS} FROM silences"
            " WHERE ref = ? AND expired_at IS NULL AND ends_at > ?"
            " ORDER BY created_at, silence_id",
            (ref, to_us(active_at)),
        )
        return [_to_silence(row) for row in rows]

    async def active_silences(self, now: datetime) -> list[SilenceRecord]:
        """Every silence not expired and still running at ``now``, oldest first."""
        rows = await self._connection.fetchall(
            "active_silences",
            f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE expired_at IS NULL AND ends_at > ?"
            " ORDER BY created_at, silence_id",
            (to_us(now),),
        )
        return [_to_silence(row) for row in rows]

    # -- audit -------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        """Append ``entry``; its ``id`` is ignored (the database assigns one)."""
        await self._connection.execute(
            "add_audit",
            "INSERT INTO audit (at, user_id, action, ref, result, detail, silence_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                to_us(entry.at),
                entry.user,
                entry.action,
                entry.ref,
                entry.result,
                entry.detail,
                entry.silence_id,
            ),
        )

    async def list_audit(self, limit: int) -> list[AuditEntry]:
        """Newest first (by ``at``, then insertion order)."""
        rows = await self._connection.fetchall(
            "list_audit", f"SELECT {_AUDIT_COLUMNS} FROM audit ORDER BY at DESC, id DESC LIMIT ?", (limit,)
        )
        return [_to_audit(row) for row in rows]

    # -- cards -------------------------------------------------------------------

    async def save_card(self, card: CardRecord) -> None:
        """Store (or replace) ``card``; skipped if its reference is gone.

        Like ``record_sent``: a card of a pruned reference will never be
        updated, and a dangling row would outlive pruning.
        """
        await self._connection.execute(
            "save_card",
            f"INSERT INTO cards ({_CARD_COLUMNS}) SELECT ?, ref, ?, ?, ?, ? FROM alert_refs WHERE ref = ?"
            " ON CONFLICT (task_id) DO UPDATE SET ref = excluded.ref, app = excluded.app,"
            " users = excluded.users, response_code = excluded.response_code,"
            " response_code_at = excluded.response_code_at",
            (
                card.task_id,
                card.app,
                dumps(list(card.users)),
                card.response_code,
                _us_or_none(card.response_code_at),
                card.ref,
            ),
            durable=False,
        )

    async def cards_for_ref(self, ref: int) -> list[CardRecord]:
        """In the order they were first saved."""
        rows = await self._connection.fetchall(
            "cards_for_ref", f"SELECT {_CARD_COLUMNS} FROM cards WHERE ref = ? ORDER BY rowid", (ref,)
        )
        return decode_rows(rows, _to_card, "cards_for_ref")

    async def get_card(self, task_id: str) -> CardRecord | None:
        row = await self._connection.fetchone(
            "get_card", f"SELECT {_CARD_COLUMNS} FROM cards WHERE task_id = ?", (task_id,)
        )
        return _decode_one(row, _to_card)

    async def use_response_code(self, task_id: str) -> str | None:
        """Take the card's response_code and clear it, in one transaction, so
        two concurrent updates can never both spend the same code."""
        async with self._connection.session("use_response_code", write=True) as db:
            async with db.execute("SELECT response_code FROM cards WHERE task_id = ?", (task_id,)) as cur:
                row = await cur.fetchone()
            code: str | None = row[0] if row is not None else None
            if code is not None:
                await db.execute(
                    "UPDATE cards SET response_code = NULL, response_code_at = NULL WHERE task_id = ?",
                    (task_id,),
                )
        return code

    async def set_response_code(self, task_id: str, response_code: str, now: datetime) -> None:
        """Keep the fresh code a click's callback brought; unknown cards are ignored."""
        await self._connection.execute(
            "set_response_code",
            "UPDATE cards SET response_code = ?, response_code_at = ? WHERE task_id = ?",
            (response_code, to_us(now), task_id),
        )

    # -- retention -----------------------------------------------------------------

    async def prune(self, now: datetime, retention: timedelta) -> int:
        """Delete what can no longer be referred to; returns the rows deleted.

        * references resolved before ``now - retention``, with their
          sent-index rows and cards (same transaction, chunked);
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
                for table in ("ref_sent", "cards", "alert_refs"):
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
        return total
