"""Files members send to an app, kept beside the audit row that records them (SQLite)."""

from __future__ import annotations

from alertbridge.stores.codec import to_us
from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.state import Attachment, AuditEntry


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
            ) as cursor:
                audit_id = cursor.lastrowid
            assert audit_id is not None  # an INSERT into a rowid table always has one
            await db.execute(
                "INSERT INTO audit_attachments (audit_id, kind, filename, content_type, media_id, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    audit_id,
                    attachment.kind,
                    attachment.filename,
                    attachment.content_type,
                    attachment.media_id,
                    attachment.data,
                ),
            )
        return audit_id

    async def get_attachment(self, audit_id: int) -> Attachment | None:
        row = await self._connection.fetchone(
            "get_attachment",
            "SELECT kind, filename, content_type, media_id, data FROM audit_attachments WHERE audit_id = ?",
            (audit_id,),
        )
        if row is None:
            return None
        return Attachment(row[0], row[1], row[2], row[3], bytes(row[4]), audit_id=audit_id)
