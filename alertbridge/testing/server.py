"""Run an ASGI app on a real uvicorn server on loopback, in a background thread.

Tests use it to talk to fakes (``alertbridge.testing.fake_wecom``) over real
HTTP, so the client's URL building, JSON encoding and error handling run as in
production. The server has its own event loop in its own thread, so it keeps
answering while a test's loop is blocked in ``await``; port 0 lets the OS pick
a free port, read back once the server is listening.

    with serve_in_thread(app) as base_url:
        ...  # e.g. "http://127.0.0.1:54321"

Stopping a uvicorn server takes ~0.2 s (it polls its exit flag every 0.1 s
and then sleeps 0.1 s), which adds up over hundreds of tests. A test module
can instead serve a ``SwappableApp`` once and point it at a fresh app per test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class SwappableApp:
    """An ASGI app that forwards each request to ``target``, which may be replaced at any time.

    Lifespan events are answered here, not forwarded: the targets come and go
    while the server keeps running. Without a target, requests get HTTP 503.
    """

    def __init__(self, target: ASGIApp | None = None) -> None:
        self.target = target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        target = self.target
        if target is None:
            await PlainTextResponse("no app is being served", status_code=503)(scope, receive, send)
            return
        await target(scope, receive, send)


class ServerThread:
    """A uvicorn server running ``app`` in a daemon thread; ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout: float = 10.0,
        # Requests still running at shutdown are cancelled after this long, so a
        # fake stuck in an injected delay cannot hang a test's teardown.
        shutdown_timeout: int = 2,
        log_level: str = "warning",
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            # Leave the process's logging configuration alone (tests capture it).
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=shutdown_timeout,
            lifespan="auto",
        )
        self._server = uvicorn.Server(config)
        self._host = host
        self._startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("server not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        """Start the server and wait until it listens; returns the base URL.

        Raises:
            RuntimeError: the server failed to start or did not start in time.
        """
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._run, name="uvicorn-test-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server failed to start: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start in time")
            time.sleep(0.005)
        sockets = self._server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        return self.base_url

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread (idempotent)."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # noqa: BLE001 - reported by start(), not lost in the thread
            # uvicorn calls sys.exit() when it cannot bind; keep it for start()'s message.
            self._failure = exc

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` for the duration of the ``with`` block; yields the base URL."""
    with ServerThread(app, host, port) as server:
        yield server.base_url
