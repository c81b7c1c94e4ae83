"""``message/recall`` for the fake WeCom (docs §4.5): an app takes back one of
its own ``message/send`` messages, sent less than 24 hours ago.

A recalled message leaves what members see (``FakeWeCom.messages()``) and is
listed by ``recalled()`` (over HTTP ``GET /_fake/recalled``). An unknown msgid, another app's, one already
recalled or one older than 24 h (on the fake's wall clock, as ``Message.timestamp``)
gets 40058 — WeCom does not document which errcode it answers then.

Registered by ``FakeWeCom`` (``recall``), which owns the routes' request checks.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge.testing.fake_wecom import (
    MESSAGE_RECALL,
    MESSAGE_SEND,
    FakeWeCom,
    Message,
    _answer,
    _parse_body,
    _Reject,
)

RECALL_WINDOW_SECONDS = 24 * 3600
RECALL_REFUSED = 40058


class FakeRecall:
    """The recall endpoint and what it took back, on ``host``'s state and lock."""

    def __init__(self, host: FakeWeCom) -> None:
        self._host = host
        self._recalled: list[Message] = []

    def routes(self) -> list[Route]:
        return [
            Route("/cgi-bin/message/recall", self._recall, methods=["POST"]),
            Route("/_fake/recalled", self._http_recalled, methods=["GET"]),
        ]

    def clear(self) -> None:
        """Forget what was recalled (``FakeWeCom.reset``; call with the host's lock held)."""
        self._recalled = []

    def recalled(self) -> list[Message]:
        """Messages taken back, oldest recall first."""
        with self._host._lock:
            return list(self._recalled)

    async def _http_recalled(self, request: Request) -> Response:
        return JSONResponse([m.to_json() for m in self.recalled()])

    async def _recall(self, request: Request) -> Response:
        host = self._host
        early = await host._begin(MESSAGE_RECALL, request)
        if early is not None:
            return early
        try:
            app = host._authorize(request.query_params.get("access_token", ""))
            msgid = _parse_body(await request.body()).get("msgid")
            if not isinstance(msgid, str) or not msgid:
                raise _Reject(40058, "invalid Request Parameter, msgid is missing")
            with host._lock:
                now = host._wall_clock()
                shown = [
                    m
                    for m in host._delivered
                    if m.endpoint == MESSAGE_SEND and m.msgid == msgid and m.agent_id == app.agent_id
                ]
                if not shown or now - shown[0].timestamp >= RECALL_WINDOW_SECONDS:
                    raise _Reject(RECALL_REFUSED, "invalid msgid: unknown, recalled or older than 24 hours")
                host._delivered = [m for m in host._delivered if m not in shown]
                self._recalled.extend(shown)
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})
