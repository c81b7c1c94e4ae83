"""Connection limits that apply before any request reaches the app (and its authentication).

uvicorn (with httptools) accepts a request head of any size, waits forever
for a client that sends one header byte at a time, and reads a body as slowly
as the client likes: a few dozen connections could hold hundreds of MB or
every socket without ever sending a credential. ``guarded_http_protocol``
returns uvicorn's httptools protocol with three limits added:

* the request line and headers together may be ``max_header_bytes`` long;
  longer gets HTTP 431 and the connection is closed, before the parser has
  stored more than that;
* the head must be complete within ``header_timeout`` of the connection (or
  of the request's first byte, on a kept-alive connection), else 408 and close;
* the body must be complete within ``body_timeout`` of the head, else the
  connection is closed (the app sees a disconnect and answers nothing).

The connection cap is uvicorn's own ``limit_concurrency``: a request on a
connection beyond it is answered 503.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float


# After a refusal the client may still be sending; closing at once with its data
# unread makes the kernel send a reset, which can destroy our answer before the
# client reads it. So the rest is read and dropped for this long ("lingering close").
LINGER_SECONDS = 1.0


def _answer(status: bytes, transport: asyncio.Transport) -> None:
    """Send a bodiless ``status`` answer and end our side of the connection."""
    if transport.is_closing():
        return
    transport.write(
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 0\r\nconnection: close\r\n\r\n"
    )
    if transport.can_write_eof():
        transport.write_eof()


def guarded_http_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with ``limits`` (pass it as ``uvicorn.Config(http=...)``)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _reading_head = True
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._start_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timer()
            super().connection_lost(exc)

        _discarding = False

        def data_received(self, data: bytes) -> None:
            if self._discarding:
                return
            if not self._reading_head:
                super().data_received(data)
                return
            room = limits.max_header_bytes - self._head_bytes
            head, rest = data[:room], data[room:]
            self._head_bytes += len(head)
            super().data_received(head)
            if not rest or self.transport.is_closing():
                return
            if self._reading_head:
                self._refuse(b"431 Request Header Fields Too Large")
                return
            super().data_received(rest)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._reading_head:  # the next request on a kept-alive connection
                self._start_head()

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._arm(limits.body_timeout, self._body_timed_out)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._cancel_timer()
            super().on_message_complete()

        def _start_head(self) -> None:
            self._reading_head = True
            self._head_bytes = 0
            self._arm(limits.header_timeout, self._head_timed_out)

        def _arm(self, seconds: float, callback: object) -> None:
            self._cancel_timer()
            self._timer = self.loop.call_later(seconds, callback)  # type: ignore[arg-type]

        def _cancel_timer(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _head_timed_out(self) -> None:
            self._timer = None
            if self._reading_head:
                self._refuse(b"408 Request Timeout")

        def _refuse(self, status: bytes) -> None:
            """Answer ``status``, drop whatever else arrives, close after ``LINGER_SECONDS``."""
            self._discarding = True
            _answer(status, self.transport)
            self._arm(LINGER_SECONDS, self.transport.close)

        def _body_timed_out(self) -> None:
            self._timer = None
            self.transport.close()

    return GuardedHttpToolsProtocol
