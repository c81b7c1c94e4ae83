"""``gettoken`` and ``agent/get``: access tokens per app, as WeCom issues them."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertbridge.testing.fake_wecom.parsing import _answer
from alertbridge.testing.fake_wecom.records import _Reject, _Token
from alertbridge.testing.fake_wecom.spec import AGENT_GET, GETTOKEN
from alertbridge.testing.fake_wecom.state import FakeState


class TokenRoutes(FakeState):
    """Issues tokens (40013 wrong corp, 40001 wrong secret) and answers ``agent/get``."""

    async def _gettoken(self, request: Request) -> Response:
        early = await self._begin(GETTOKEN, request)
        if early is not None:
            return early
        corp_id = request.query_params.get("corpid", "")
        secret = request.query_params.get("corpsecret", "")
        if not any(app.corp_id == corp_id for app in self.apps):
            return _answer(40013, "invalid corpid")
        app = next((a for a in self.apps if a.corp_id == corp_id and a.secret == secret), None)
        if app is None:
            return _answer(40001, "invalid credential, access_token is invalid or not latest")
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = _Token(app, self._clock() + self.token_lifetime)
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_lifetime}
        )

    async def _agent_get(self, request: Request) -> Response:
        """The app's own details; another agent's id is refused as WeCom does (301002)."""
        early = await self._begin(AGENT_GET, request)
        if early is not None:
            return early
        try:
            app = self._authorize(request.query_params.get("access_token", ""))
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        if request.query_params.get("agentid") != str(app.agent_id):
            return _answer(301002, "access_token and agentid mismatch")
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "agentid": app.agent_id, "name": "fake app", "close": 0}
        )
