"""Durable state behind two protocols, and the one place that picks their backend.

``OutboxStore`` (``alertbridge.stores.outbox``) holds accepted notifications
until they are sent; ``StateStore`` (``alertbridge.stores.state``) holds
references, acks, silences, cards and the audit trail. ``stores_for`` reads
``[store] url`` and builds both on the backend it names (SQLite for one
process, PostgreSQL for several replicas); nothing else in alertbridge names a backend. Every backend passes
``alertbridge.testing.store_contract``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from alertbridge.stores.outbox import (
    Delivery,
    DeliveryStatus,
    DigestClaim,
    DigestClaimStatus,
    DigestPartRecord,
    Enqueued,
    NewDelivery,
    OneOffMessage,
    OutboxStore,
    Reservation,
    SendLimit,
    StoredDigest,
)
from alertbridge.stores.state import StateStore

if TYPE_CHECKING:
    from alertbridge.config import Config
    from alertbridge.metrics import Metrics

__all__ = [
    "Delivery",
    "DeliveryStatus",
    "DigestClaim",
    "DigestClaimStatus",
    "DigestPartRecord",
    "Enqueued",
    "NewDelivery",
    "OneOffMessage",
    "OutboxStore",
    "PoolUsage",
    "Reservation",
    "SendLimit",
    "StateStore",
    "StoredDigest",
    "Stores",
    "stores_for",
]


class Held(Protocol):
    """Something held until closed (a lock)."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """A connection pool's connections at one moment: lent out, and open but free."""

    in_use: int
    idle: int


def _no_pool() -> PoolUsage | None:
    """Backends without a connection pool (SQLite: one connection) report none."""
    return None


@dataclass(frozen=True, slots=True)
class Stores:
    """The outbox and the state store of one backend, built but not yet open.

    Open the outbox first and close it last: a backend may share one
    connection between the two, owned by the outbox.
    """

    outbox: OutboxStore
    state: StateStore
    # Taken by ``serve`` before anything starts, held while it runs: makes
    # sure no second serving process uses the same SQLite file (see
    # alertbridge.startup). Raises ``StartupError`` when one does. PostgreSQL
    # is shared by replicas by design: its lock holds nothing.
    lock_for_serving: Callable[[], Held]
    # Read by /metrics at scrape time: the pool's connections now, or None
    # for a backend without a pool (its pool gauges are then left out).
    pool_usage: Callable[[], PoolUsage | None] = _no_pool


def stores_for(
    config: Config, *, outbox: OutboxStore | None = None, metrics: Metrics | None = None
) -> Stores:
    """The stores ``[store] url`` names, for ``config``.

    ``outbox`` replaces the one the backend would build (tests inject
    failing stores); the state store then still lives beside it.
    ``metrics`` is the serving process's: the store counts what only it
    sees there (the CLI passes none).
    """
    url = config.store.url
    if url.startswith("sqlite:///"):
        from alertbridge.stores.sqlite import sqlite_stores

        return sqlite_stores(
            config.store.sqlite_path,
            dedup_window=config.delivery.dedup_window,
            outbox=outbox,
            metrics=metrics,
        )
    if config.store.is_postgres:
        from alertbridge.stores.postgres import postgres_stores

        return postgres_stores(
            url,
            replica=config.store.replica,
            dedup_window=config.delivery.dedup_window,
            pool_size=config.store.pool_size,
            outbox=outbox,
            metrics=metrics,
        )
    # Config validation admits only the URLs above (and this must not print the password).
    raise ValueError("no store for this [store] url")
