"""An ``httpx.AsyncClient`` whose connection pools are built on its first request.

Why: building httpx's transport builds its TLS context, which loads the CA
bundle — measured ~2.8 MB resident for the first client of a process and
~0.8 MB for each further one. ``alertbridge serve`` makes its clients at
start-up (the composition root hands them down), but an idle service, or one
that never fetches an image or asks a silencer, never sends a request
through some of them. With ``DeferredPoolClient`` that memory is paid when
the first request is made, not at start-up.

Everything else is httpx's own: the transports are built by httpx's
``_init_transport``/``_init_proxy_transport`` with the very arguments the
client was given (TLS verification, limits, ``trust_env`` and the proxies it
finds in the environment), only later. Closing the client closes what was
built; a pool never built has nothing to close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx


class DeferredTransport(httpx.AsyncBaseTransport):
    """Builds the transport it stands for on the first request it handles."""

    def __init__(self, build: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._build = build
        self._built: httpx.AsyncBaseTransport | None = None

    @property
    def built(self) -> bool:
        """Whether a request has gone through, so the real transport exists."""
        return self._built is not None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._built is None:
            # No await between the check and the assignment: built once.
            self._built = self._build()
        return await self._built.handle_async_request(request)

    async def aclose(self) -> None:
        if self._built is not None:
            await self._built.aclose()


class DeferredPoolClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` with the same arguments and behaviour; see the module docs."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx.AsyncBaseTransport:
        build = super()._init_transport
        return DeferredTransport(lambda: build(*args, **kwargs))

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx.AsyncBaseTransport:
        build = super()._init_proxy_transport
        return DeferredTransport(lambda: build(*args, **kwargs))
