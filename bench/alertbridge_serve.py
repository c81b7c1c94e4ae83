"""``alertbridge serve`` as the scenarios run it: config, store, replicas.

Each process gets a config written into the scenario's fresh directory, with
its listen port, its store (SQLite on disk in that directory, so every
accepted webhook is fsynced; or a ``postgresql://`` URL) and, when a scenario
needs WeCom, the fake's app. Several processes on one PostgreSQL database are
replicas: alertbridge names its leases after the host name, as it would after
a pod's, so each replica runs in its own UTS namespace with its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.common import (
    CORES,
    FAKE_AGENT_ID,
    FAKE_CORP_ID,
    FAKE_SECRET,
    ServerProcess,
    free_port,
)


def sqlite_url(workdir: Path) -> str:
    """The SQLite outbox of a scenario's directory, on disk."""
    return f"sqlite:///{workdir / 'data' / 'alertbridge.db'}"


def alertbridge_config(
    port: int,
    workdir: Path,
    body: str,
    *,
    store_url: str,
    api_base: str | None = None,
    name: str = "alertbridge",
) -> Path:
    """Write an alertbridge config (listen port, ``store_url``, the fake's app) + ``body``."""
    text = f'[server]\nlisten = "127.0.0.1:{port}"\n[store]\nurl = "{store_url}"\n'
    if api_base is not None:
        text += (
            f'[wecom]\napi_base = "{api_base}"\n'
            f'[wecom.apps.ops]\ncorp_id = "{FAKE_CORP_ID}"\n'
            f'agent_id = {FAKE_AGENT_ID}\nsecret = "{FAKE_SECRET}"\n'
        )
    path = workdir / f"{name}.toml"
    path.write_text(text + body, encoding="utf-8")
    return path


class AlertbridgeProcess(ServerProcess):
    """``alertbridge serve``; knows its store, so a scenario can count the pending outbox rows."""

    def __init__(self, name: str, argv: Sequence[str], port: int, workdir: Path, store_url: str) -> None:
        super().__init__(name, argv, port, workdir, core=CORES.server, ready_path="/readyz")
        self.store_url = store_url

    def pending_deliveries(self) -> int | None:
        """Pending rows in its outbox (read-only), or None when it cannot be read."""
        if self.store_url.startswith("sqlite:///"):
            return _pending_sqlite(Path(self.store_url.removeprefix("sqlite:///")))
        return _pending_postgres(self.store_url)


def alertbridge_process(
    workdir: Path,
    body: str,
    *,
    api_base: str | None = None,
    store_url: str | None = None,
    replica: str | None = None,
) -> AlertbridgeProcess:
    """``alertbridge serve`` on the server core; ``body`` adds receivers and settings.

    The store is SQLite in ``workdir`` unless ``store_url`` names another.
    ``replica`` runs it as one of several replicas on a shared store, with that
    host name: alertbridge names its leases after the host, as it would a pod.
    """
    port = free_port()
    name = "alertbridge" if replica is None else f"alertbridge-{replica}"
    url = store_url or sqlite_url(workdir)
    config = alertbridge_config(port, workdir, body, store_url=url, api_base=api_base, name=name)
    argv = [sys.executable, "-m", "alertbridge", "serve", "-c", str(config)]
    if replica is not None:
        argv = [*hostname_argv(replica), *argv]
    return AlertbridgeProcess(name, argv, port, workdir, url)


@contextmanager
def alertbridge_replicas(
    workdir: Path, body: str, count: int, *, store_url: str, api_base: str | None = None
) -> Iterator[list[AlertbridgeProcess]]:
    """``count`` alertbridge processes on one shared store (replicas ``r1``, ``r2``, …), all running."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                alertbridge_process(workdir, body, api_base=api_base, store_url=store_url, replica=f"r{i}")
            )
            for i in range(1, count + 1)
        ]


def hostname_argv(name: str) -> list[str]:
    """A prefix that runs the rest of an argv with host name ``name``, in its own UTS namespace.

    Replicas on one machine would otherwise share the host name and so the
    lease owner. ``unshare`` and ``sh`` exec into the command, so its PID is
    the server's: SIGTERM and /proc reach alertbridge itself. As root; else
    inside a user namespace.
    """
    namespaces = ["--uts"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--uts"]
    return ["unshare", *namespaces, "sh", "-c", f'hostname {name} && exec "$@"', "sh"]


def check_hostname_argv() -> None:
    """Raise, with the reason, when replicas cannot get their own host names here."""
    try:
        done = subprocess.run(  # noqa: S603 - our own argv
            [*hostname_argv("bench-check"), "hostname"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError as exc:
        raise RuntimeError(f"replicas need their own host names: unshare failed ({exc})") from exc
    if done.returncode != 0 or done.stdout.strip() != "bench-check":
        raise RuntimeError(f"replicas need their own host names: unshare --uts failed: {done.stderr.strip()}")


def _pending_sqlite(db_path: Path) -> int | None:
    import sqlite3

    try:
        connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            row = connection.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    return int(row[0])


def _pending_postgres(url: str) -> int | None:
    import asyncio

    import asyncpg

    async def count() -> int:
        connection = await asyncpg.connect(url, timeout=5)
        try:
            value = await connection.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        finally:
            await connection.close()
        return int(value)

    try:
        return asyncio.run(count())
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return None
