"""Files members send to an app, kept beside the audit row that records them (PostgreSQL)."""

from __future__ import annotations

from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.state import Attachment, AuditEntry
from alertbridge.stores.state_codec import (
    ATTACHMENT_COLUMNS,
    AUDIT_INSERT_COLUMNS,
    attachment_values,
    audit_values,
    decode_one,
    to_attachment,
)


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
                    f"INSERT INTO audit ({AUDIT_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    *audit_values(entry),
                )
            )
            await conn.execute(
                f"INSERT INTO audit_attachments ({ATTACHMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
                *attachment_values(audit_id, attachment),
            )
        return audit_id

    async def get_attachment(self, audit_id: int) -> Attachment | None:
        row = await self._db.fetchrow(
            "get_attachment",
            f"SELECT {ATTACHMENT_COLUMNS} FROM audit_attachments WHERE audit_id = $1",
            audit_id,
        )
        return decode_one(row, to_attachment)
