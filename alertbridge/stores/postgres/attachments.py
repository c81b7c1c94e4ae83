"""Files members send to an app, kept beside the audit row that records them (PostgreSQL)."""

from __future__ import annotations

from alertbridge.stores.codec import to_us
from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.state import Attachment, AuditEntry


class PostgresAttachments:
    """The attachments part of ``PostgresStateStore`` (a mixin on its database)."""

    _db: PostgresDatabase

    async def latest_audit_ref(self, user: str) -> int | None:
        ref = await self._db.fetchval(
            "latest_audit_ref",
            "SELECT ref FROM audit WHERE user_id = $1 AND ref IS NOT NULL ORDER BY at DESC, id DESC LIMIT 1",
            user,
        )
        return None if ref is None else int(ref)

    async def add_attachment(self, entry: AuditEntry, attachment: Attachment) -> int:
        async with self._db.transaction("add_attachment") as conn:
            audit_id = int(
                await conn.fetchval(
                    "INSERT INTO audit (at, user_id, action, ref, result, detail, silence_id)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    to_us(entry.at),
                    entry.user,
                    entry.action,
                    entry.ref,
                    entry.result,
                    entry.detail,
                    entry.silence_id,
                )
            )
            await conn.execute(
                "INSERT INTO audit_attachments (audit_id, kind, filename, content_type, media_id, data)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                audit_id,
                attachment.kind,
                attachment.filename,
                attachment.content_type,
                attachment.media_id,
                attachment.data,
            )
        return audit_id

    async def get_attachment(self, audit_id: int) -> Attachment | None:
        row = await self._db.fetchrow(
            "get_attachment",
            "SELECT kind, filename, content_type, media_id, data FROM audit_attachments WHERE audit_id = $1",
            audit_id,
        )
        if row is None:
            return None
        return Attachment(row[0], row[1], row[2], row[3], bytes(row[4]), audit_id=audit_id)
