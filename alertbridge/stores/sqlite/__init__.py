"""The SQLite store: outbox and state in one database file, for one serving process.

``db`` holds what both share (the durable connection, value encoding);
``outbox`` and ``state`` implement the ``OutboxStore`` and ``StateStore``
protocols of ``alertbridge.stores``; ``sqlite_stores`` builds the pair on one
connection.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path

from alertbridge.metrics import Metrics
from alertbridge.startup import lock_store
from alertbridge.stores import OutboxStore, Stores
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore


def sqlite_stores(
    path: Path, *, dedup_window: timedelta, outbox: OutboxStore | None = None, metrics: Metrics | None = None
) -> Stores:
    """Both stores on the file at ``path``, sharing the outbox's connection.

    One connection queues the two stores' transactions in-process; two would
    meet at SQLite's file lock, whose busy handler sleeps. An injected
    ``outbox`` that is not a SQLite one leaves the state store its own.
    ``metrics`` (the server's) counts the outbox's group commits.
    """
    if outbox is None:
        outbox = SqliteOutboxStore(path, dedup_window=dedup_window, metrics=metrics)
    state = SqliteStateStore(
        path, connection=outbox.connection if isinstance(outbox, SqliteOutboxStore) else None
    )
    return Stores(outbox=outbox, state=state, lock_for_serving=functools.partial(lock_store, path))
