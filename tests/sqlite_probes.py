"""What the SQLite store tests share beyond the store contract: a store's
private connection, and another connection holding the write lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore


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
