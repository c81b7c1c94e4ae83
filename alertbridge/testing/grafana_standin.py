"""A loopback stand-in for Grafana's silence API, backed by a real Alertmanager.

Grafana cannot be installed here (docs/alertmanager-grafana.md §9), but its
built-in Alertmanager speaks Alertmanager's API v2 under
``/api/alertmanager/grafana/api/v2/`` (§8). This app forwards those paths to
a real Alertmanager's ``/api/v2/`` so clients meet real silence semantics,
and answers the way Grafana does where the two differ:

- every request needs ``Authorization: Bearer <token>``, else 401
  ``{"message": "Unauthorized"}`` / ``{"message": "Invalid API key"}``;
  a ``read_only_token`` (a Viewer) may read but gets 403 on writes;
- ``POST …/silences`` answers **202** ``{"silenceID": id}``, or with
  ``legacy_create_response`` Grafana 8's ``{"message": "silence created", "id": id}``;
- ``DELETE …/silence/{id}`` answers 200 ``{"message": "silence deleted"}``,
  and 404 for an unknown silence (Alertmanager 0.25 says 500 "silence not found");
- errors are JSON objects with a ``message``, as Grafana's ``ErrResp`` writes them.

``requests`` records ``(method, path, authorization)`` of every request.

    standin = GrafanaStandin(alertmanager.base_url, token="glsa_test")
    with ServerThread(standin) as server:
        ...  # GrafanaSilencer with url = server.base_url
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

PREFIX = "/api/alertmanager/grafana/api/v2"
_FORWARDED = ("silences", "silence/{silence_id}", "alerts", "alerts/groups", "status")


class GrafanaStandin:
    """An ASGI app: Grafana's Alertmanager API in front of the Alertmanager at ``alertmanager_url``."""

    def __init__(
        self,
        alertmanager_url: str,
        token: str,
        *,
        read_only_token: str | None = None,
        legacy_create_response: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.alertmanager_url = alertmanager_url.rstrip("/")
        self.token = token
        self.read_only_token = read_only_token
        # May be flipped while serving; read per request.
        self.legacy_create_response = legacy_create_response
        self.timeout = timeout
        self.requests: list[tuple[str, str, str | None]] = []
        routes = [
            Route(f"{PREFIX}/silences", self._post_silence, methods=["POST"]),
            Route(f"{PREFIX}/silence/{{silence_id}}", self._delete_silence, methods=["DELETE"]),
            *(Route(f"{PREFIX}/{path}", self._forward_get, methods=["GET"]) for path in _FORWARDED),
            # Grafana's health check: unauthenticated, as in Grafana (see __call__).
            Route("/api/health", self._health, methods=["GET"]),
            Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "DELETE"]),
        ]
        self._app = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            self.requests.append((request.method, request.url.path, request.headers.get("authorization")))
            refusal = None if request.url.path == "/api/health" else self._refusal(request)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if header is None:
            return _message(401, "Unauthorized")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or credentials not in {self.token, self.read_only_token} - {None}:
            return _message(401, "Invalid API key")
        if credentials != self.token and request.method not in ("GET", "HEAD"):
            return JSONResponse(
                {
                    "accessErrorId": "ACE0000000000",
                    "message": "You'll need additional permissions to perform this action. "
                    "Permissions needed: alert.instances:create",
                    "title": "Access denied",
                },
                status_code=403,
            )
        return None

    async def _post_silence(self, request: Request) -> Response:
        upstream = await self._upstream(request, "/api/v2/silences")
        if isinstance(upstream, Response):
            return upstream
        if upstream.status_code != 200:
            return _error(upstream)
        silence_id = upstream.json()["silenceID"]
        if self.legacy_create_response:
            return JSONResponse({"message": "silence created", "id": silence_id}, status_code=202)
        return JSONResponse({"silenceID": silence_id}, status_code=202)

    async def _delete_silence(self, request: Request) -> Response:
        upstream = await self._upstream(
            request, "/api/v2/silence/" + quote(request.path_params["silence_id"], safe="")
        )
        if isinstance(upstream, Response):
            return upstream
        if upstream.status_code == 200:
            return _message(200, "silence deleted")
        if upstream.status_code == 404 or "silence not found" in upstream.text.lower():
            return _message(404, "silence not found")
        return _error(upstream)

    async def _forward_get(self, request: Request) -> Response:
        upstream = await self._upstream(request, "/api/v2" + request.url.path.removeprefix(PREFIX))
        if isinstance(upstream, Response):
            return upstream
        if upstream.status_code != 200:
            return _error(upstream)
        return Response(upstream.content, media_type="application/json")

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"database": "ok", "version": "standin"})

    async def _not_found(self, request: Request) -> Response:
        return _message(404, "Not found")

    async def _upstream(self, request: Request, path: str) -> httpx.Response | Response:
        """Alertmanager's answer to ``request`` sent to ``path`` (query kept),
        or a 500 to return when it did not answer."""
        url = httpx.URL(self.alertmanager_url + path, query=request.url.query.encode("ascii"))
        body = await request.body()
        headers = {"content-type": request.headers.get("content-type", "application/json")} if body else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                return await client.request(request.method, url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return _message(500, f"alertmanager unavailable: {type(exc).__name__}")


def _message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _error(upstream: httpx.Response) -> JSONResponse:
    """Alertmanager's error (a JSON string, a validation object or text) as
    Grafana's ``{"message": …}`` with the same status."""
    data: Any
    try:
        data = upstream.json()
    except ValueError:
        data = upstream.text
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        data = data["message"]
    if not isinstance(data, str):
        data = upstream.text
    return _message(upstream.status_code, data.strip() or f"HTTP {upstream.status_code}")
