"""Reading a request's head and body cheaply, for every endpoint that takes a body."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request


class BodyTooLarge(Exception):
    """The body is longer than the endpoint accepts (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"body larger than {limit} bytes")


def header(request: Request, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case, as ASGI servers pass names), or None.

    One pass over the raw header list: Starlette's ``request.headers.get``
    builds a ``Headers`` object and raises and catches a KeyError for every
    absent header, a few microseconds on every webhook (Phase 10).
    """
    raw: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in raw:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading;
    a chunked or lying client is cut off once ``limit`` bytes have arrived,
    so a huge body is never held in memory. The ASGI messages are read
    straight from ``receive``, without ``request.stream()``'s async
    generator (the body of a webhook arrives in one message).

    Raises:
        BodyTooLarge: over ``limit``.
        starlette.requests.ClientDisconnect: the client went away mid-body.
    """
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
