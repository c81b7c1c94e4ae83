"""What ``alertbridge serve`` makes sure of before anything starts: the store
is ours alone, and the listen address is free.

Two processes on one SQLite outbox would each claim and send deliveries
(leases keep them apart, but the SQLite store grants every process every
target's digests and frees all leases at start-up, as the only process
would), so the second refuses to start and names the first by PID. A port in use is found by binding the socket here,
before the app's lifespan runs: the operator gets one clear line, not a
"started" log followed by uvicorn's traceback.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import BinaryIO

from alertbridge.errors import AlertbridgeError


class StartupError(AlertbridgeError):
    """``serve`` cannot start: the store is locked or the port is taken."""


def lock_store(db_path: Path) -> BinaryIO:
    """Hold an exclusive lock on ``<db>.lock`` for as long as the returned file stays open.

    The lock is ``flock``: the kernel drops it when the process dies, even by
    SIGKILL, so a crash never leaves a stale lock. The file holds the owner's PID.

    Raises:
        StartupError: another process holds it (named by its PID), or the file cannot be made.
    """
    path = db_path.with_name(db_path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+b")
    except OSError as exc:
        raise StartupError(f"{path}: cannot create the store's lock file: {exc.strerror}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read(32).decode("ascii", "replace").strip() or "unknown"
        handle.close()
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise StartupError(
                f"{db_path}: the store is in use by another alertbridge (PID {holder}, see {path}); "
                "stop it or give this one its own [store] url"
            ) from None
        raise StartupError(f"{path}: cannot lock the store: {exc.strerror}") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    return handle


def bind_listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn to serve on.

    Raises:
        StartupError: the address is in use, not ours, or not an address.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise StartupError(f"server.listen: cannot resolve {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"server.listen: {host}:{port} is already in use by another process; "
                "stop it or choose another port"
            ) from None
        raise StartupError(f"server.listen: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
