"""Group commit for every backend: many concurrent enqueues, one transaction.

A commit costs a disk flush (SQLite's fsync, PostgreSQL's WAL flush); a burst
of webhooks must not pay one each. ``GroupCommit`` hands each caller's row
to a single writer task, which gives everything queued at that moment to the
backend's ``commit`` in one call (one transaction) and tells every caller of
the batch its delivery id, or the same ``StoreError``: either the whole batch
is stored or none of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from alertbridge.errors import StoreError
from alertbridge.metrics import Metrics
from alertbridge.stores.outbox import Enqueued

logger = logging.getLogger(__name__)

_P = TypeVar("_P")

# Event-loop turns the writer yields before collecting a batch: the requests
# already being handled reach their enqueue first, so a burst becomes one
# commit (microseconds when idle).
_GATHER_TURNS: Final = 3


@dataclass(slots=True)
class _Pending(Generic[_P]):
    """One enqueue waiting for the writer: its row and its caller's future."""

    row: _P
    future: asyncio.Future[Enqueued]


class _Stop:
    """Queue sentinel: everything queued before it is drained, then the writer exits."""


_STOP: Final = _Stop()


def _fail(items: Iterable[_Pending[_P]], message: str) -> None:
    """Fail every caller of ``items`` still waiting with ``StoreError(message)``."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(StoreError(message))


class GroupCommit(Generic[_P]):
    """A single writer task and the queue that feeds it.

    ``commit`` stores a batch of rows in one transaction and returns one
    ``Enqueued`` per row, in order; a ``StoreError`` from it fails the batch.
    Committed batches are counted on ``metrics`` (the serving process's; the
    CLI passes none) as ``alertbridge_outbox_group_commits_total``, so an
    operator sees how well bursts are batched.
    """

    def __init__(
        self,
        name: str,
        commit: Callable[[list[_P]], Awaitable[list[Enqueued]]],
        *,
        batch_limit: int,
        metrics: Metrics | None = None,
    ) -> None:
        if batch_limit < 1:
            raise ValueError("batch_limit must be at least 1")
        self.name = name
        self.batch_limit = batch_limit
        self._metrics = metrics
        self._commit = commit
        self._queue: asyncio.Queue[_Pending[_P] | _Stop] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False

    def start(self) -> None:
        """Accept enqueues; the store is open."""
        self._queue = asyncio.Queue()
        self._accepting = True
        self._task = asyncio.create_task(self._run_writer(), name=f"outbox-writer:{self.name}")

    async def stop(self) -> None:
        """Refuse new enqueues and commit every one already accepted."""
        self._accepting = False
        if self._task is not None:
            self._queue.put_nowait(_STOP)
            await self._task
            self._task = None

    async def submit(self, row: _P) -> Enqueued:
        """Wait until ``row`` is committed with its batch; its delivery id."""
        if not self._accepting:
            raise StoreError("enqueue: store is not open")
        future: asyncio.Future[Enqueued] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(row, future))
        return await future

    async def _run_writer(self) -> None:
        """Commit queued rows in batches until told to stop."""
        batch: list[_Pending[_P]] = []
        try:
            while True:
                first = await self._queue.get()
                if isinstance(first, _Stop):
                    return
                for _ in range(_GATHER_TURNS):
                    await asyncio.sleep(0)
                batch = [first]
                stop = False
                while len(batch) < self.batch_limit:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if isinstance(item, _Stop):
                        stop = True
                        break
                    batch.append(item)
                await self._commit_batch(batch)
                batch = []
                if stop:
                    return
        finally:
            # Only reached with work left if the writer itself was cancelled:
            # nobody may wait forever on a future the writer will never set.
            leftovers = list(batch)
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if isinstance(item, _Pending):
                    leftovers.append(item)
            _fail(leftovers, "enqueue: store closed")

    async def _commit_batch(self, batch: list[_Pending[_P]]) -> None:
        """Commit ``batch`` in one transaction; resolve every future either way."""
        # A caller that gave up (cancelled) before we started need not be stored.
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        try:
            ids = await self._commit([item.row for item in live])
        except StoreError as exc:
            _fail(live, str(exc))
            logger.error("outbox batch of %d not stored: %s", len(live), exc)
            return
        except Exception as exc:
            # A bug must not kill the writer (every later enqueue would hang):
            # fail this batch loudly and keep serving.
            logger.exception("outbox writer failed on a batch of %d", len(live))
            _fail(live, f"enqueue: {type(exc).__name__}")
            return
        if self._metrics is not None:
            self._metrics.group_commits.inc()
        for item, delivery_id in zip(live, ids, strict=True):
            if not item.future.done():
                item.future.set_result(delivery_id)
