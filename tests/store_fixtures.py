"""What the SQLite store tests share: the clock, opening a store for a block,
its private connection, and another connection holding the write lock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

SqliteStore = TypeVar("SqliteStore", SqliteOutboxStore, SqliteStateStore)


@asynccontextmanager
async def opened(store: SqliteStore) -> AsyncIterator[SqliteStore]:
    """``store``, open for the block and closed after it."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def private_connection(store: SqliteOutboxStore | SqliteStateStore) -> aiosqlite.Connection:
    """The store's own aiosqlite connection, for per-connection test hooks
    (PRAGMAs like max_page_count only affect this connection)."""
    db = store._connection._db
    assert db is not None
    return db


async def pragmas(store: SqliteOutboxStore | SqliteStateStore, *names: str) -> dict[str, Any]:
    """The values of PRAGMAs ``names`` on the store's own connection."""
    db = private_connection(store)
    values = {}
    for name in names:
        async with db.execute(f"PRAGMA {name}") as cur:
            row = await cur.fetchone()
        assert row is not None
        values[name] = row[0]
    return values


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another writer (the other store, say) holds the file's lock for the block."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()
