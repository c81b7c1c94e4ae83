"""The durable floor: the bare Starlette endpoint plus the one thing a 200 promises.

Like ``bench.baseline_app``, served the same way, but every webhook is stored
before it is answered: the body is checked to be JSON (msgspec), appended to
one SQLite table (WAL, ``synchronous = FULL``: fsynced, as alertbridge's
outbox) by a group commit (one writer, one transaction and one fsync for
whatever is queued), and the answer names the row. Nothing else: no typed
parse, no dedup, no log line, no metrics, no dispatcher. The ingest
scenario reports it beside alertbridge, so the ratio alertbridge / bare
Starlette can be read against what durability alone costs on this machine.

    python -m bench.floor_app --port 8091 --db /tmp/floor.db
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from bench.baseline_app import serve

_Item = tuple[tuple[str, bytes], "asyncio.Future[int]"]


class GroupCommitLog:
    """An append-only table and the single writer that commits its batches on one thread."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, receiver TEXT, body BLOB)"
        )
        self._thread = ThreadPoolExecutor(1)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()

    async def append(self, receiver: str, body: bytes) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(((receiver, body), future))
        return await future

    def _commit(self, rows: list[tuple[str, bytes]]) -> list[int]:
        self._db.execute("BEGIN IMMEDIATE")
        ids = [
            int(self._db.execute("INSERT INTO inbox (receiver, body) VALUES (?, ?)", row).lastrowid or 0)
            for row in rows
        ]
        self._db.execute("COMMIT")
        return ids

    async def run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            ids = await loop.run_in_executor(self._thread, self._commit, [row for row, _ in batch])
            for (_, future), row_id in zip(batch, ids, strict=True):
                future.set_result(row_id)


def create_app(db: Path) -> Starlette:
    log = GroupCommitLog(db)

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        msgspec.json.decode(body)
        row_id = await log.append(request.path_params["receiver"], body)
        return JSONResponse({"status": "accepted", "id": row_id})

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer = asyncio.create_task(log.run_writer())
        yield
        writer.cancel()

    return Starlette(
        routes=[
            Route("/alertmanager/{receiver}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    serve(create_app(args.db), args.host, args.port)


if __name__ == "__main__":
    main()
