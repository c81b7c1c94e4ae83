"""What users' commands leave in the state store: silences, the audit trail, cards."""

from __future__ import annotations

from datetime import datetime

from alertbridge.stores.codec import decode_rows, dumps, to_us
from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.state import AuditEntry, CardRecord, SilenceRecord
from alertbridge.stores.state_codec import (
    AUDIT_COLUMNS,
    AUDIT_INSERT_COLUMNS,
    CARD_COLUMNS,
    SILENCE_COLUMNS,
    audit_values,
    decode_one,
    to_audit,
    to_card,
    to_silence,
    us_or_none,
)


class SqliteCommandRecords:
    """The silences, audit and cards half of ``SqliteStateStore`` (a mixin on its connection)."""

    _connection: SqliteConnection

    # -- silences ----------------------------------------------------------------

    async def add_silence(self, record: SilenceRecord) -> None:
        """Store ``record``; the same ``silence_id`` again replaces it.

        Replacing rather than failing makes a retried call harmless, and a
        silencer that updates a silence in place returns the same id.
        """
        await self._connection.execute(
            "add_silence",
            f"INSERT INTO silences ({SILENCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
                us_or_none(record.expired_at),
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
            "get_silence", f"SELECT {SILENCE_COLUMNS} FROM silences WHERE silence_id = ?", (silence_id,)
        )
        return to_silence(row) if row is not None else None

    async def silences_for_ref(self, ref: int, *, active_at: datetime) -> list[SilenceRecord]:
        """Silences of ``ref`` not expired and still running at ``active_at``, oldest first."""
        rows = await self._connection.fetchall(
            "silences_for_ref",
            f"SELECT {SILENCE_COLUMNS} FROM silences"
            " WHERE ref = ? AND expired_at IS NULL AND ends_at > ?"
            " ORDER BY created_at, silence_id",
            (ref, to_us(active_at)),
        )
        return [to_silence(row) for row in rows]

    async def active_silences(self, now: datetime) -> list[SilenceRecord]:
        """Every silence not expired and still running at ``now``, oldest first."""
        rows = await self._connection.fetchall(
            "active_silences",
            f"SELECT {SILENCE_COLUMNS} FROM silences WHERE expired_at IS NULL AND ends_at > ?"
            " ORDER BY created_at, silence_id",
            (to_us(now),),
        )
        return [to_silence(row) for row in rows]

    # -- audit -------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        """Append ``entry``; its ``id`` is ignored (the database assigns one)."""
        await self._connection.execute(
            "add_audit",
            f"INSERT INTO audit ({AUDIT_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            audit_values(entry),
        )

    async def list_audit(self, limit: int) -> list[AuditEntry]:
        """Newest first (by ``at``, then insertion order)."""
        rows = await self._connection.fetchall(
            "list_audit", f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY at DESC, id DESC LIMIT ?", (limit,)
        )
        return [to_audit(row) for row in rows]

    # -- cards -------------------------------------------------------------------

    async def save_card(self, card: CardRecord) -> None:
        """Store (or replace) ``card``; skipped if its reference is gone.

        Like ``record_sent``: a card of a pruned reference will never be
        updated, and a dangling row would outlive pruning.
        """
        await self._connection.execute(
            "save_card",
            f"INSERT INTO cards ({CARD_COLUMNS}) SELECT ?, ref, ?, ?, ?, ? FROM alert_refs WHERE ref = ?"
            " ON CONFLICT (task_id) DO UPDATE SET ref = excluded.ref, app = excluded.app,"
            " users = excluded.users, response_code = excluded.response_code,"
            " response_code_at = excluded.response_code_at",
            (
                card.task_id,
                card.app,
                dumps(list(card.users)),
                card.response_code,
                us_or_none(card.response_code_at),
                card.ref,
            ),
            durable=False,
        )

    async def cards_for_ref(self, ref: int) -> list[CardRecord]:
        """In the order they were first saved."""
        rows = await self._connection.fetchall(
            "cards_for_ref", f"SELECT {CARD_COLUMNS} FROM cards WHERE ref = ? ORDER BY rowid", (ref,)
        )
        return decode_rows(rows, to_card, "cards_for_ref")

    async def get_card(self, task_id: str) -> CardRecord | None:
        row = await self._connection.fetchone(
            "get_card", f"SELECT {CARD_COLUMNS} FROM cards WHERE task_id = ?", (task_id,)
        )
        return decode_one(row, to_card)

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
