"""PostgreSQL for the scenarios that compare it with SQLite or run several replicas on it.

The server is ``alertbridge.testing.postgres_server.PostgresServer`` (Debian's
binaries, loopback, password login as the application user), started with
``durable=True``: the SQLite outbox it is compared with fsyncs every commit,
so PostgreSQL must too. Its processes are pinned to the server core, because
storing is part of the work under test (SQLite does it inside alertbridge's
own process on that core).

Without the binaries nothing starts: ``missing`` says why and the scenarios
put that (``SKIPPED``) in their PostgreSQL rows instead of failing. The same
goes for a machine that cannot give replicas their own host names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alertbridge.testing.postgres_server import PostgresServer, find_binaries
from bench.alertbridge_serve import check_hostname_argv
from bench.common import CORES, log

SKIPPED = "skipped: no PostgreSQL"


def missing() -> str | None:
    """Why the PostgreSQL rows cannot run here (the text for their result), or None."""
    if find_binaries() is None:
        return SKIPPED
    try:
        check_hostname_argv()
    except RuntimeError as exc:
        return f"skipped: {exc}"
    return None


def _pin_tree(pid: int, core: int) -> None:
    """Pin ``pid`` and its children to ``core``; backends forked later inherit it."""
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            os.sched_setaffinity(current, {core})
            children = Path(f"/proc/{current}/task/{current}/children").read_text(encoding="ascii")
        except (OSError, ValueError):
            continue  # exited meanwhile
        pending.extend(int(child) for child in children.split())


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A durable PostgreSQL on loopback, pinned to the server core; ``create_database`` per run."""
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError(SKIPPED)
    with PostgresServer(binaries, durable=True) as server:
        postmaster = int((server.data_dir / "postmaster.pid").read_text(encoding="ascii").splitlines()[0])
        _pin_tree(postmaster, CORES.server)
        log(f"PostgreSQL on 127.0.0.1:{server.port} (fsync on), pinned to core {CORES.server}")
        yield server
