"""Files members send to an app, kept beside the audit row that records them (SQLite)."""

from __future__ import annotations

from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.state import Attachment, AuditEntry
from alertbridge.stores.state_codec import (
    ATTACHMENT_COLUMNS,
    AUDIT_INSERT_COLUMNS,
    attachment_values,
    audit_values,
    decode_one,
    to_attachment,
)


class SqliteAttachments:
    """The attachments part of ``SqliteStateStore`` (a mixin on its connection)."""

    _connection: SqliteConnection

    async def latest_audit_ref(self, user: str) -> int | None:
        row = await self._connection.fetchone(
            "latest_audit_ref",
            "SELECT ref FROM audit WHERE user_id = ? AND ref IS NOT NULL ORDER BY at DESC, id DESC LIMIT 1",
            (user,),
        )
        return None if row is None else int(row[0])

    async def add_attachment(self, entry: AuditEntry, attachment: Attachment) -> int:
        async with self._connection.session("add_attachment", write=True) as db:
            async with db.execute(
                f"INSERT INTO audit ({AUDIT_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                audit_values(entry),
            ) as cursor:
                audit_id = cursor.lastrowid
            assert audit_id is not None  # an INSERT into a rowid table always has one
            await db.execute(
                f"INSERT INTO audit_attachments ({ATTACHMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                attachment_values(audit_id, attachment),
            )
        return audit_id

    async def get_attachment(self, audit_id: int) -> Attachment | None:
        row = await self._connection.fetchone(
            "get_attachment",
            f"SELECT {ATTACHMENT_COLUMNS} FROM audit_attachments WHERE audit_id = ?",
            (audit_id,),
        )
        return decode_one(row, to_attachment)
