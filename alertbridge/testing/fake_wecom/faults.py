"""Injected failures: what a fault is, and how one is applied to a request
(a delay that notices a client giving up, an HTTP status, an errcode).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from alertbridge.testing.fake_wecom.spec import ENDPOINTS


@dataclass(frozen=True, slots=True)
class Fault:
    """An injected failure, applied before the endpoint's own checks.

    ``delay`` seconds pass first (the request is abandoned early if the client
    disconnects); then ``status`` answers with that HTTP status and an HTML
    body, or ``errcode`` answers HTTP 200 with that errcode. A fault with only
    a delay lets the request proceed normally afterwards. ``answer_delay``
    (``message/send``): the message is taken as usual and its answer held back
    that long — WeCom delivered it, the sender may time out before hearing so.
    """

    errcode: int | None = None
    errmsg: str = "injected fault"
    status: int | None = None
    delay: float = 0.0
    answer_delay: float = 0.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """Raises ``ValueError``/``TypeError`` on values of the wrong type."""
        errcode, status = data.get("errcode"), data.get("status")
        return cls(
            errcode=None if errcode is None else int(errcode),
            errmsg=str(data.get("errmsg", "injected fault")),
            status=None if status is None else int(status),
            delay=float(data.get("delay", 0.0)),
            answer_delay=float(data.get("answer_delay", 0.0)),
        )


@dataclass(slots=True)
class _FaultRate:
    fault: Fault
    probability: float


def _check_endpoint(endpoint: str) -> None:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")


async def _sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; True if the client went away meanwhile."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.05, remaining))
    return False
