"""A throwaway PostgreSQL on loopback, for tests of the PostgreSQL store.

Tests talk to a real server, never a mock: ``PostgresServer`` runs Debian's
``postgresql`` binaries (``initdb`` + ``pg_ctl``) on a free port of
127.0.0.1 with its data directory in a fresh temp directory, and removes
both when stopped. Clients log in with a password (``scram-sha-256``) as an
application user that owns the databases ``create_database`` makes, as a
real deployment would; the superuser is only used to create them.

``initdb`` refuses to run as root, and CI runs as root: then every server
binary runs as the ``postgres`` system user (``runuser -u postgres --``),
which owns the temp directory.

``require_postgres`` finds the binaries: a skip with the reason when they are
missing locally, a failure under ``CI=true`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final
from urllib.parse import quote

# Where Debian's postgresql package puts the server binaries (newest first),
# then whatever is on PATH.
_DEBIAN_BIN: Final = Path("/usr/lib/postgresql")
_SYSTEM_USER: Final = "postgres"
APP_USER: Final = "alertbridge"
_START_TIMEOUT: Final = 60  # seconds: a cold initdb + start on a busy 2-core CI box
_STOP_TIMEOUT: Final = 30


def find_binaries() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``psql``, or None."""
    if _DEBIAN_BIN.is_dir():
        versions = sorted(
            (p for p in _DEBIAN_BIN.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
            reverse=True,
        )
        if versions:
            return versions[0] / "bin"
    initdb = shutil.which("initdb")
    if initdb is not None:
        directory = Path(initdb).resolve().parent
        if (directory / "pg_ctl").exists() and (directory / "psql").exists():
            return directory
    return None


def require_postgres() -> Path:
    """The binaries directory; a skip locally, a failure under CI=true, when missing."""
    import pytest

    found = find_binaries()
    if found is None:
        message = (
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed:"
            " apt-get install postgresql (CI installs it in .ci/run)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server in a temp directory; ``start`` it, ``stop`` it.

    Also a context manager. ``url(database)`` is a ``postgresql://`` URL
    with the application user's password in it.

    ``durable`` keeps PostgreSQL's fsync on: tests do not need it, but the
    benchmark compares PostgreSQL with a SQLite outbox that fsyncs every commit.
    """

    def __init__(self, binaries: Path, *, durable: bool = False) -> None:
        self.binaries = binaries
        self.durable = durable
        self.port = 0
        self.password = secrets.token_urlsafe(16)
        self._superuser_password = secrets.token_urlsafe(16)
        self._root: Path | None = None
        self._databases = 0
        # initdb refuses root; the server then runs as the postgres user.
        self._as_user: tuple[str, ...] = ()
        if os.geteuid() == 0:
            self._as_user = ("runuser", "-u", _SYSTEM_USER, "--")

    @property
    def data_dir(self) -> Path:
        if self._root is None:
            raise RuntimeError("PostgresServer is not started")
        return self._root / "data"

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a server binary (as the postgres user when we are root); its stdout."""
        done = subprocess.run(  # noqa: S603 - fixed binaries, our own arguments
            [*self._as_user, str(self.binaries / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT,
            env={**os.environ, **(env or {})},
            cwd="/",
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
        return done.stdout

    def start(self) -> None:
        """initdb, configure loopback + scram, start; create the application user."""
        self._root = Path(tempfile.mkdtemp(prefix="alertbridge-pg-"))
        try:
            if self._as_user:
                shutil.chown(self._root, user=_SYSTEM_USER, group=_SYSTEM_USER)
            pwfile = self._root / "pwfile"
            pwfile.write_text(self._superuser_password + "\n")
            if self._as_user:
                shutil.chown(pwfile, user=_SYSTEM_USER, group=_SYSTEM_USER)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # a test server's durability does not matter
            )
            pwfile.unlink()
            self._start_on_free_port()
            self.psql(
                "postgres",
                f"CREATE ROLE {APP_USER} LOGIN CREATEDB PASSWORD '{self.password}'",
            )
        except BaseException:
            self.stop()
            raise

    def _start_on_free_port(self) -> None:
        """pg_ctl start on a free port, retrying when another process took it meanwhile."""
        for attempt in range(3):
            self.port = _free_port()
            try:
                self._pg_ctl_start()
                return
            except RuntimeError:
                if attempt == 2:
                    raise RuntimeError(f"PostgreSQL did not start; log:\n{self.log()}") from None

    def _pg_ctl_start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self._root}"
            " -c max_connections=100 -c shared_buffers=16MB"
        )
        if not self.durable:
            options += " -c fsync=off"
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(_START_TIMEOUT),
            "-o",
            options,
            "-l",
            str(self._log_path),
        )

    def stop_server(self) -> None:
        """Shut the server down, keeping its data (a database outage; see ``start_server``)."""
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def start_server(self) -> None:
        """Start it again after ``stop_server``, on the same port with the same data."""
        self._pg_ctl_start()

    @property
    def _log_path(self) -> Path:
        return self.data_dir.parent / "server.log"

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        if self._root is None:
            return ""
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` as the superuser over TCP (password auth, like every client)."""
        return self._run(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
            env={"PGPASSWORD": self._superuser_password},
        )

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by the application user; its URL."""
        self._databases += 1
        name = name or f"test_{self._databases}_{secrets.token_hex(4)}"
        self.psql("postgres", f'CREATE DATABASE "{name}" OWNER {APP_USER}')
        return self.url(name)

    def url(self, database: str, user: str = APP_USER, password: str | None = None) -> str:
        """A URL for ``database``: the application user's, or ``user`` with ``password``."""
        secret = self.password if password is None else password
        return f"postgresql://{user}:{quote(secret, safe='')}@127.0.0.1:{self.port}/{database}"

    def _pid(self) -> int | None:
        """The postmaster's PID from postmaster.pid, if it is running."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, IndexError, ValueError, RuntimeError):
            return None

    def stop(self) -> None:
        """``pg_ctl stop``; then the postmaster by PID if it is still there; remove the temp dir."""
        if self._root is None:
            return
        pid = self._pid()
        if pid is not None:
            # A failed pg_ctl stop leaves the PID below as the fallback.
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
            deadline = time.monotonic() + _STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self._root, ignore_errors=True)
        self._root = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by the postgres user while we are not root
    return True
