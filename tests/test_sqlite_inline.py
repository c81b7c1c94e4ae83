"""The SQLite connection runs statements on the event loop's thread and commits
on aiosqlite's (alertbridge.stores.sqlite.db.LoopConnection)."""

from __future__ import annotations

import threading
from datetime import timedelta

from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.testing.store_contract import T0, make_delivery


async def test_statements_run_inline_and_commits_on_the_thread(outbox: SqliteOutboxStore) -> None:
    seen: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()
    db = outbox.connection._db
    assert db is not None
    await db.set_trace_callback(
        lambda sql: seen.append((sql.split()[0].upper(), threading.get_ident() == loop_thread))
    )

    await outbox.enqueue(make_delivery(request_id="inline-1"))  # durable
    await outbox.claim_due(T0 + timedelta(days=1), 10, timedelta(seconds=30))  # not durable

    inserts = [inline for word, inline in seen if word == "INSERT"]
    commits = [inline for word, inline in seen if word == "COMMIT"]
    assert inserts and all(inserts), seen
    # Commits may wait on the disk (the enqueue's fsync, any one's checkpoint): off the loop.
    assert commits == [False, False], seen
