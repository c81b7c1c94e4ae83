"""``/healthz`` (the process answers) and ``/readyz`` (it can do its job)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")
