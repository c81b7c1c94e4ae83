"""Messages to recall when their group resolves (``SentMessage``), in SQLite.

Taking a message deletes its row in one transaction: whoever takes it
recalls it, and nobody recalls it twice, even after a restart.
"""

from __future__ import annotations

from alertbridge.stores.codec import decode_rows, to_us
from alertbridge.stores.sqlite.db import SqliteConnection
from alertbridge.stores.state import SentMessage
from alertbridge.stores.state_codec import SENT_MESSAGE_COLUMNS, to_sent_message


class SqliteSentMessages:
    """The sent-messages part of ``SqliteStateStore`` (a mixin on its connection)."""

    _connection: SqliteConnection

    async def save_sent_message(self, message: SentMessage) -> None:
        """Store ``message`` (durably: a recall must survive a restart);
        skipped if its reference is gone."""
        await self._connection.execute(
            "save_sent_message",
            f"INSERT INTO sent_messages ({SENT_MESSAGE_COLUMNS}) SELECT ?, ref, ?, ? FROM alert_refs"
            " WHERE ref = ? ON CONFLICT (msgid) DO NOTHING",
            (message.msgid, message.app, to_us(message.sent_at), message.ref),
        )

    async def sent_messages_for_ref(self, ref: int) -> list[SentMessage]:
        rows = await self._connection.fetchall(
            "sent_messages_for_ref",
            f"SELECT {SENT_MESSAGE_COLUMNS} FROM sent_messages WHERE ref = ? ORDER BY sent_at, msgid",
            (ref,),
        )
        return decode_rows(rows, to_sent_message, "sent_messages_for_ref")

    async def take_sent_message(self, msgid: str) -> bool:
        taken = await self._connection.execute(
            "take_sent_message", "DELETE FROM sent_messages WHERE msgid = ?", (msgid,)
        )
        return taken > 0
