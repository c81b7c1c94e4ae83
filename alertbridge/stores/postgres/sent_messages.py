"""Messages to recall when their group resolves (``SentMessage``), in PostgreSQL.

Taking a message deletes its row: of several replicas' upkeeps taking the
same one, exactly one sees it deleted, so it is recalled once.
"""

from __future__ import annotations

from alertbridge.stores.codec import decode_rows, to_us
from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.state import SentMessage
from alertbridge.stores.state_codec import SENT_MESSAGE_COLUMNS, to_sent_message


class PostgresSentMessages:
    """The sent-messages part of ``PostgresStateStore`` (a mixin on its database)."""

    _db: PostgresDatabase

    async def save_sent_message(self, message: SentMessage) -> None:
        """Store ``message``; skipped if its reference is gone."""
        await self._db.execute(
            "save_sent_message",
            f"INSERT INTO sent_messages ({SENT_MESSAGE_COLUMNS}) SELECT $1, ref, $2, $3 FROM alert_refs"
            " WHERE ref = $4 ON CONFLICT (msgid) DO NOTHING",
            message.msgid,
            message.app,
            to_us(message.sent_at),
            message.ref,
        )

    async def sent_messages_for_ref(self, ref: int) -> list[SentMessage]:
        rows = await self._db.fetch(
            "sent_messages_for_ref",
            f"SELECT {SENT_MESSAGE_COLUMNS} FROM sent_messages WHERE ref = $1 ORDER BY sent_at, msgid",
            ref,
        )
        return decode_rows(rows, to_sent_message, "sent_messages_for_ref")

    async def take_sent_message(self, msgid: str) -> bool:
        taken = await self._db.execute(
            "take_sent_message", "DELETE FROM sent_messages WHERE msgid = $1", msgid
        )
        return taken > 0
