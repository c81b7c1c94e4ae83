"""What the PostgreSQL stores share: the connection pool, its error rules, the schema.

Several alertbridge replicas use one database. Each replica's outbox and
state store share one ``PostgresDatabase`` (one pool): the first to open it
connects and brings the schema up to date, the last to close it disconnects.

Every failure to reach or use the database is a ``StoreError`` whose message
names the operation and a short reason, never the URL (it holds the
password). A failed transaction is rolled back; the pool replaces a broken
connection, so the next operation simply tries again, and a replica recovers
by itself once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Final, TypeAlias

import asyncpg
import asyncpg.pool

from alertbridge.errors import StoreError
from alertbridge.stores.postgres.schema import MIGRATIONS, SCHEMA_VERSION

logger = logging.getLogger(__name__)

# A pooled connection (a string: the class is generic only in the type stubs).
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

# What talking to PostgreSQL raises: server errors, a closed or broken
# connection, a network failure or timeout (TimeoutError is an OSError), and
# asyncpg's own protocol confusion (InternalClientError: seen on a connection
# the server dropped mid-query during a restart). Any of these must reach the
# dispatcher as a StoreError: anything else would end its loop.
DATABASE_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
# After these a connection's state is unknown (a query may still be in
# flight on it): it is closed rather than handed to the next caller.
_BROKEN_CONNECTION: Final = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)

# The advisory lock key replicas take while migrating ("alertbridge" as a
# number): replicas starting together apply each step once, in order.
_MIGRATION_LOCK: Final = 0x616C657274627267


def reason(exc: BaseException) -> str:
    """A short, secret-free reason for a StoreError message.

    Server messages name tables, values and users, never the connection
    password; network errors name the address.
    """
    if isinstance(exc, asyncpg.PostgresError):
        return f"{exc} ({exc.sqlstate})" if exc.sqlstate else str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def affected(status: str) -> int:
    """Rows a statement changed, from its command tag (``UPDATE 3``, ``INSERT 0 1``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDatabase:
    """One database, a pool of connections to it, shared by a replica's two stores.

    ``pool_size`` connections at most; ``timeout`` bounds connecting,
    waiting for a free connection and every statement, so an unreachable
    database turns into ``StoreError`` (a 503 for a webhook) rather than a
    request that hangs.
    """

    def __init__(self, url: str, *, pool_size: int = 10, timeout: timedelta = timedelta(seconds=10)) -> None:
        self._url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresDatabase(pool_size={self.pool_size})"  # never the URL

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def acquire(self) -> None:
        """Open the pool and migrate if nobody has; count one more user."""
        async with self._lock:
            if self._pool is None:
                self._pool = await self._connect()
            self._users += 1

    async def release(self) -> None:
        """Count one user less; the last one closes the pool."""
        async with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            pool, self._pool = (self._pool, None) if self._users == 0 else (None, self._pool)
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout.total_seconds())
            except DATABASE_ERRORS as exc:
                pool.terminate()
                raise StoreError(f"closing the database: {reason(exc)}") from exc

    async def _connect(self) -> asyncpg.Pool[asyncpg.Record]:
        seconds = self.timeout.total_seconds()
        try:
            pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self.pool_size,
                timeout=seconds,
                command_timeout=seconds,
            )
        except DATABASE_ERRORS as exc:
            raise StoreError(f"cannot connect to the database: {reason(exc)}") from exc
        except ValueError as exc:  # a malformed URL; its text may hold the password
            raise StoreError("cannot connect to the database: invalid URL") from exc
        try:
            async with pool.acquire(timeout=seconds) as conn:
                await migrate(conn)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, DATABASE_ERRORS):
                raise StoreError(f"cannot migrate the database: {reason(exc)}") from exc
            raise
        return pool

    def usage(self) -> tuple[int, int] | None:
        """(in use, idle) connections of the pool right now; None while it is closed."""
        pool = self._pool
        if pool is None:
            return None
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle

    def _require(self, op: str) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StoreError(f"{op}: store is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self, op: str) -> AsyncIterator[Connection]:
        """A connection inside one transaction for ``op``; errors become StoreError.

        READ COMMITTED, PostgreSQL's default: the statements that need more
        take row locks (``FOR UPDATE [SKIP LOCKED]``), advisory locks or a
        unique key, as each says.
        """
        pool = self._require(op)
        try:
            async with pool.acquire(timeout=self.timeout.total_seconds()) as conn:
                try:
                    async with conn.transaction():
                        yield conn
                except _BROKEN_CONNECTION:
                    conn.terminate()  # the pool opens a fresh one in its place
                    raise
        except DATABASE_ERRORS as exc:
            raise StoreError(f"{op}: {reason(exc)}") from exc

    # One statement, one transaction: the common case.

    async def execute(self, op: str, sql: str, *args: Any) -> int:
        """Run one writing statement; how many rows it changed."""
        async with self.transaction(op) as conn:
            return affected(await conn.execute(sql, *args))

    async def executemany(self, op: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            async with self.transaction(op) as conn:
                await conn.executemany(sql, rows)

    async def fetch(self, op: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.transaction(op) as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchrow(self, op: str, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.transaction(op) as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, op: str, sql: str, *args: Any) -> Any:
        async with self.transaction(op) as conn:
            return await conn.fetchval(sql, *args)


async def migrate(conn: Connection) -> None:
    """Apply the missing schema steps, each in its own transaction, under an advisory lock.

    Replicas starting together queue on the lock; each then reads the
    version afresh, so every step is applied once. A database already at
    this version is only read: a role with data rights alone can start. A database newer than
    this release is refused rather than used with the wrong columns.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        # Created only when missing: a role with data rights alone (the owner ran
        # `alertbridge migrate`) may not CREATE, even IF NOT EXISTS.
        if not await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
            await conn.execute(
                "CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
        version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this alertbridge"
                f" supports ({SCHEMA_VERSION}); upgrade alertbridge"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            async with conn.transaction():
                for statement in MIGRATIONS[target - 1]:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES ($1, now())", target
                )
            logger.info("migrated the database to schema version %d", target)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
