"""The PostgreSQL store: outbox and state in one database, shared by several replicas.

``db`` holds the pool and the migrations (``schema``); ``outbox`` (with
``digests``) and ``state`` (with ``command_records``) implement the
``OutboxStore`` and ``StateStore`` protocols of ``alertbridge.stores`` and
pass ``alertbridge.testing.store_contract``. ``postgres_stores`` builds a
replica's pair on one pool.
"""

from __future__ import annotations

from datetime import timedelta

from alertbridge.metrics import Metrics
from alertbridge.stores import Held, OutboxStore, PoolUsage, Stores
from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.postgres.outbox import PostgresOutboxStore
from alertbridge.stores.postgres.state import PostgresStateStore


class _NoLock:
    """Replicas share the database by design: serving takes no exclusive lock."""

    def close(self) -> None:
        """Nothing is held."""


def postgres_stores(
    url: str,
    *,
    replica: str,
    dedup_window: timedelta,
    pool_size: int = 10,
    outbox: OutboxStore | None = None,
    metrics: Metrics | None = None,
) -> Stores:
    """Both stores of one replica on the database at ``url``, sharing one pool.

    ``replica`` names this replica in its leases (unique per running
    replica, stable across its restarts: the pod name). An injected
    ``outbox`` that is not a PostgreSQL one leaves the state store a pool of its own.
    """
    if outbox is None:
        outbox = PostgresOutboxStore(
            PostgresDatabase(url, pool_size=pool_size),
            replica=replica,
            dedup_window=dedup_window,
            metrics=metrics,
        )
    database = (
        outbox.database
        if isinstance(outbox, PostgresOutboxStore)
        else PostgresDatabase(url, pool_size=pool_size)
    )

    def lock_for_serving() -> Held:
        return _NoLock()

    def pool_usage() -> PoolUsage | None:
        usage = database.usage()
        return PoolUsage(in_use=usage[0], idle=usage[1]) if usage is not None else None

    return Stores(
        outbox=outbox,
        state=PostgresStateStore(database),
        lock_for_serving=lock_for_serving,
        pool_usage=pool_usage,
    )
