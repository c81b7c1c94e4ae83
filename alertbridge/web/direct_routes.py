"""The webhook routes, served before Starlette's middleware and router.

Every alert arrives through ``POST /alertmanager/{receiver}`` or
``POST|PUT /grafana/{receiver}``. Their endpoints answer every refusal they
expect themselves (``alertbridge.web.ingest``), so Starlette's error and
exception middleware and its route list do nothing for them but cost: ~9 %
of the CPU a webhook takes under the ingest bench (Phase 10, bench/README.md).
``DirectRoutes`` matches those routes with Starlette's own ``Route.matches``
and calls their endpoints at once; everything else, including a webhook
path with the wrong method (405 from Starlette), goes to the app behind.

The scope gets ``app`` as Starlette would give it, so ``request.app`` and
``request.url_for`` work in these endpoints as in any other.

An exception an endpoint did not expect reaches uvicorn, which logs it and
answers 500, as it does behind Starlette's ``ServerErrorMiddleware``.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send


class DirectRoutes:
    """ASGI app: ``routes`` (function endpoints) served directly, the rest by ``app``."""

    def __init__(self, app: ASGIApp, routes: Sequence[Route]) -> None:
        self.app = app
        self._routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope["app"] = self.app
                    scope.update(child_scope)
                    response = await route.endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
