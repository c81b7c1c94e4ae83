"""The fake WeCom's ``menu/create``: checks a self-built app's menu as WeCom does, keeps it.

``POST /cgi-bin/menu/create?access_token=…&agentid=…`` with ``{"button": [...]}``:
the token must be valid (41001/40014/42001, as every app endpoint) and belong
to the app ``agentid`` names (40056 when it is missing or not a number,
301002 for another app's); one to three top-level buttons (40016), at most
five ``sub_button`` each; a known ``type`` (40017); a name of 1-16 bytes at
the top, 1-40 in a sub-menu (40018); a ``click`` button needs a key of 1-128
bytes (40019), a ``view`` button a url (40020). An accepted menu replaces the
app's previous one; ``menu(agent_id)`` shows it. Part of ``FakeWeCom``
(``fake.menus``), kept apart so the fake's main module does not keep growing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge.testing.fake_wecom import FakeWeCom, _agent_id, _answer, _Reject

MENU_CREATE = "menu/create"
_TYPES = frozenset(
    {"click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album"}
    | {"pic_weixin", "location_select", "view_miniprogram"}
)


class FakeMenus:
    """The menus apps installed, by agent id; ``host`` checks the tokens."""

    def __init__(self, host: FakeWeCom) -> None:
        self._host = host
        self._lock = threading.Lock()
        self._menus: dict[int, list[Mapping[str, Any]]] = {}
        self.requests = 0

    def routes(self) -> list[Route]:
        return [Route("/cgi-bin/menu/create", self._create, methods=["POST"])]

    def menu(self, agent_id: int) -> list[Mapping[str, Any]] | None:
        """The top-level buttons app ``agent_id`` installed last, None if none."""
        with self._lock:
            return self._menus.get(agent_id)

    async def _create(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
        try:
            app = self._host._authorize(request.query_params.get("access_token", ""))
            agent_id = _agent_id(request.query_params.get("agentid"))
            if agent_id is None:
                raise _Reject(40056, "invalid agentid")
            if agent_id != app.agent_id:
                raise _Reject(301002, "not allow operate another agent with this accesstoken")
            try:
                body = json.loads(await request.body())
            except ValueError:
                raise _Reject(47001, "data format error") from None
            buttons = body.get("button") if isinstance(body, dict) else None
            if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
                raise _Reject(40016, "invalid button size")
            for button in buttons:
                _check_button(button, max_name=16, nested=True)
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        with self._lock:
            self._menus[agent_id] = buttons
        return JSONResponse({"errcode": 0, "errmsg": "ok"})


def _check_button(button: object, *, max_name: int, nested: bool) -> None:
    if not isinstance(button, dict):
        raise _Reject(40016, "invalid button size")
    name = button.get("name")
    if not isinstance(name, str) or not 1 <= len(name.encode("utf-8")) <= max_name:
        raise _Reject(40018, "invalid button name size")
    subs = button.get("sub_button")
    if nested and subs:
        if not isinstance(subs, list) or len(subs) > 5:
            raise _Reject(40016, "invalid button size")
        for sub in subs:
            _check_button(sub, max_name=40, nested=False)
        return
    kind = button.get("type")
    if kind not in _TYPES:
        raise _Reject(40017, "invalid button type")
    if kind == "view":
        if not isinstance(button.get("url"), str) or not button["url"]:
            raise _Reject(40020, "invalid button url size")
        return
    key = button.get("key")
    if not isinstance(key, str) or not 1 <= len(key.encode("utf-8")) <= 128:
        raise _Reject(40019, "invalid button key size")
