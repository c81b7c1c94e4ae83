"""What the SQLite stores share: the connection and its error rules.

The outbox and the state store keep their tables in one database file. A
serving process runs both on one connection, the outbox's (see
``alertbridge.stores.sqlite.sqlite_stores``); a CLI command opens its own
beside it. Every connection opens the file the same durable way and is used
under the same locking and error rules (``SqliteConnection``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import aiosqlite

from alertbridge.errors import StoreError

logger = logging.getLogger(__name__)

# Pause between attempts to switch a new file to WAL (see ``_enable_wal``).
_WAL_RETRY: Final = timedelta(milliseconds=10)


def reason(exc: BaseException) -> str:
    """A short, secret-free reason for a StoreError message."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        return f"{exc} ({name})" if name else str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


# WAL pages between automatic checkpoints (SQLite's default: 1000). A
# checkpoint copies every page the WAL holds into the database file, reading
# it back first; the pages a burst of webhooks dirties again and again (the
# tails of the table and its indexes) are copied once per checkpoint, not once
# per 1000 frames: ~10 % more webhooks a second under the ingest bench. The
# WAL file grows to ~32 MB (4 KiB pages) before it is reused.
WAL_CHECKPOINT_PAGES: Final = 8000


async def configure_connection(db: aiosqlite.Connection, path: Path, busy_timeout: timedelta) -> None:
    """busy_timeout first, then WAL, ``synchronous = FULL``, ``temp_store = MEMORY``, the checkpoint interval.

    FULL in WAL mode fsyncs the WAL on every commit: an acknowledged webhook
    survives power loss, not just a process crash. The scratch b-trees some
    statements need (the group commit's multi-row ``INSERT … RETURNING``
    among them) stay in memory: on disk each was a file created, written and
    unlinked per batch (strace under the ingest bench: an openat, unlink,
    access and close per commit, a quarter of the page writes).
    """
    await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout / timedelta(milliseconds=1))}")
    mode = await _enable_wal(db, busy_timeout)
    if mode != "wal":
        raise StoreError(f"{path}: cannot enable WAL journal mode (got {mode!r})")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("PRAGMA temp_store = MEMORY")
    await db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")


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


async def rollback(db: aiosqlite.Connection) -> None:
    """Roll back if a transaction is still open.

    SQLite already rolls back by itself on some errors (SQLITE_FULL), so
    check first; a failing ROLLBACK is logged, not raised, so it cannot
    mask the error that caused it.
    """
    if not db.in_transaction:
        return
    try:
        await db.execute("ROLLBACK")
    except (sqlite3.Error, OSError) as exc:
        logger.error("rollback failed: %s", reason(exc))


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception (raised as is)."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield
        await db.execute("COMMIT")
    except BaseException:
        await rollback(db)
        raise


class LoopConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs statements on the event loop's thread.

    aiosqlite runs every call on its own thread: each ``execute``, ``fetchone``
    and ``COMMIT`` is a round trip between two threads, and with the server
    pinned to one core each round trip is two context switches. A dispatcher
    round (claim, reference, reserve, settle, mark) made some fifteen of them
    per delivery, and they, not SQLite, were what the server spent its core on
    (bench/README.md, Phase 10). A statement on a WAL database is
    microseconds of work, so it now runs where it is awaited; only what may
    wait on the disk — ``COMMIT``: a durable one fsyncs the WAL, and any one
    may run a WAL checkpoint — still goes to the thread (``on_thread``), so
    the event loop serves other requests meanwhile. ``SqliteConnection`` hands the connection to one session at a
    time, so the two threads never use it at once.
    """

    _inline = False

    def run_inline(self) -> None:
        """From now on run calls on the caller's thread (once connected and configured)."""
        self._inline = True

    @contextmanager
    def on_thread(self) -> Iterator[None]:
        """Run the calls made inside on aiosqlite's thread (a call that may wait on the disk)."""
        inline, self._inline = self._inline, False
        try:
            yield
        finally:
            self._inline = inline

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._inline:
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _connect(path: Path) -> LoopConnection:
    """A ``LoopConnection`` to ``path``, not yet connected (await it).

    ``isolation_level=None``: the module never opens transactions behind our
    back; every BEGIN/COMMIT is explicit. ``check_same_thread=False``: the
    connection is made on aiosqlite's thread and used on the loop's too.
    """

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)

    return LoopConnection(connector, 64)


async def _close_quietly(db: aiosqlite.Connection) -> None:
    """Close after a failed open; the open error is the one worth raising."""
    try:
        await db.close()
    except (sqlite3.Error, OSError) as exc:
        logger.warning("closing after failed open: %s", reason(exc))


class SqliteConnection:
    """A connection to the database file, used by one store or shared by both.

    ``open`` connects the durable way (``configure_connection``) and lets the
    store migrate its tables; ``session`` hands the connection out to one
    operation at a time. aiosqlite runs every call on one thread, but awaits
    between statements would let other coroutines slip their statements into
    an open transaction, so every session (and ``close``) holds one
    ``asyncio.Lock``.
    """

    def __init__(self, path: Path, busy_timeout: timedelta, *, foreign_keys: bool = False) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._foreign_keys = foreign_keys
        self._db: LoopConnection | None = None
        self._lock = asyncio.Lock()
        self._synchronous = "FULL"  # as configure_connection leaves it

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self, migrate: Callable[[aiosqlite.Connection], Awaitable[None]]) -> None:
        """Connect, configure durability, then ``migrate``; a no-op if already open.

        Every failure is a ``StoreError`` and leaves the connection closed.
        """
        if self._db is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = _connect(self.path)
            await db  # starts aiosqlite's thread and connects on it
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open {self.path}: {reason(exc)}") from exc
        try:
            await configure_connection(db, self.path, self.busy_timeout)
            if self._foreign_keys:
                await db.execute("PRAGMA foreign_keys = ON")
            await migrate(db)
        except (sqlite3.Error, OSError, StoreError) as exc:
            await _close_quietly(db)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open {self.path}: {reason(exc)}") from exc
        db.run_inline()
        self._db = db

    async def migrate(self, migrate: Callable[[aiosqlite.Connection], Awaitable[None]]) -> None:
        """Run another store's ``migrate`` on this open connection (stores sharing one file)."""
        async with self._lock:
            if self._db is None:
                raise StoreError(f"{self.path}: migrate: store is not open")
            try:
                await migrate(self._db)
            except (sqlite3.Error, OSError) as exc:
                await rollback(self._db)
                raise StoreError(f"cannot migrate {self.path}: {reason(exc)}") from exc

    async def close(self) -> None:
        """Close once the session in progress (if any) ends; a no-op if not open."""
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                try:
                    await db.close()
                except (sqlite3.Error, OSError) as exc:
                    raise StoreError(f"closing {self.path}: {reason(exc)}") from exc

    @asynccontextmanager
    async def session(
        self, op: str, *, write: bool, durable: bool = True
    ) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, alone, for one operation; errors become StoreError.

        ``write`` wraps the operation in ``BEGIN IMMEDIATE … COMMIT``: the
        write lock is taken up front, so a read-then-write inside is atomic
        against other connections too, and a busy file fails fast at BEGIN
        rather than half-way through. Whatever fails is rolled back, and the
        next operation simply tries again.

        ``durable=False`` commits without an fsync (``synchronous = NORMAL``):
        for bookkeeping that a power cut may roll back without losing an
        alert — a lease, a "sent" mark (the re-send is hidden by WeCom's
        duplicate check). A process crash loses nothing either way, and the
        next durable commit fsyncs the whole WAL, these commits included.
        Acknowledged webhooks and users' actions stay durable.
        """
        async with self._lock:
            db = self._db
            if db is None:
                raise StoreError(f"{op}: store is not open")
            try:
                if write:
                    wanted = "FULL" if durable else "NORMAL"
                    if wanted != self._synchronous:
                        await db.execute(f"PRAGMA synchronous = {wanted}")
                        self._synchronous = wanted
                    await db.execute("BEGIN IMMEDIATE")
                yield db
                if write:
                    # A durable commit fsyncs the WAL; any commit may run a WAL
                    # checkpoint, which writes and syncs the database file.
                    with db.on_thread():
                        await db.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                await rollback(db)
                raise StoreError(f"{op}: {reason(exc)}") from exc
            except BaseException:
                await rollback(db)
                raise

    # One statement, one session: the common case of ``session``.

    async def execute(self, op: str, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> int:
        """Run one writing statement in its own transaction; how many rows it changed."""
        async with self.session(op, write=True, durable=durable) as db, db.execute(sql, params) as cur:
            return cur.rowcount

    async def fetchall(self, op: str, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self.session(op, write=False) as db:
            return list(await db.execute_fetchall(sql, params))

    async def fetchone(self, op: str, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self.session(op, write=False) as db, db.execute(sql, params) as cur:
            return await cur.fetchone()
