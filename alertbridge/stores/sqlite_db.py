"""What the SQLite stores share: connection set-up and value encoding.

The outbox and the state store keep their tables in one database file, each
with its own connection; both must open it the same durable way.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiosqlite

from alertbridge.errors import StoreError

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# Pause between attempts to switch a new file to WAL (see ``_enable_wal``).
_WAL_RETRY: Final = timedelta(milliseconds=10)


def to_us(value: datetime) -> int:
    """Aware datetime → integer µs since the epoch; naive times are a bug."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware times")
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def dumps(data: Any) -> str:
    # Compact and readable in the sqlite3 shell (CJK stays CJK).
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def reason(exc: BaseException) -> str:
    """A short, secret-free reason for a StoreError message."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        return f"{exc} ({name})" if name else str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


async def configure_connection(db: aiosqlite.Connection, path: Path, busy_timeout: timedelta) -> None:
    """busy_timeout first, then WAL, then ``synchronous = FULL``.

    FULL in WAL mode fsyncs the WAL on every commit: an acknowledged webhook
    survives power loss, not just a process crash.
    """
    await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout / timedelta(milliseconds=1))}")
    mode = await _enable_wal(db, busy_timeout)
    if mode != "wal":
        raise StoreError(f"{path}: cannot enable WAL journal mode (got {mode!r})")
    await db.execute("PRAGMA synchronous = FULL")


async def _enable_wal(db: aiosqlite.Connection, busy_timeout: timedelta) -> str | None:
    """Switch to WAL, retrying while another connection holds the file.

    Switching a fresh file's journal mode needs an exclusive lock, and SQLite
    answers SQLITE_BUSY at once instead of calling the busy handler; a server
    and a CLI (or the two stores) opening a new file together would otherwise
    fail at random. Once the file is in WAL mode (it stays so), this succeeds
    on the first try.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + busy_timeout.total_seconds()
    while True:
        try:
            async with db.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or loop.time() >= deadline:
                raise
            await asyncio.sleep(_WAL_RETRY.total_seconds())
            continue
        return str(row[0]).lower() if row is not None else None
