"""Group chats created by an app (应用群聊, docs §6) for the fake WeCom:
``appchat/create``, ``appchat/get`` and ``appchat/send`` with WeCom's rules.

- only apps whose visibility is the root department may call them: an app
  ``deny``-ed answers 48002 to all three;
- create: ``chatid`` optional, at most 32 letters or digits (86001), unused
  (86215); ``userlist`` of 2-2000 existing members (86216 for an unknown
  one), ``owner`` among them (random member when absent); ``name`` is cut to
  50 characters, as WeCom does;
- get and send: a well-formed chatid (86001) of an existing chat (86003)
  created by this app (86008);
- send: the documented msgtypes (text, image, voice, video, file, textcard,
  news, mpnews, markdown; a template card is 40008), checked like
  ``message/send`` (content limits, the textcard and news sections by
  ``fake_wecom_msgtypes``, media ids); each member receives at
  most 200 a minute and 10,000 a day from one app, the excess **silently
  dropped** (``FakeWeCom.dropped()``), as WeCom does. The answer has no msgid.

Delivered chat messages are ``FakeWeCom.messages(APPCHAT_SEND)``, with the
members that received them in ``to_user``; the chats are ``chats()``, over
HTTP ``GET /_fake/appchats``. Registered by ``FakeWeCom``
(``appchats``), which owns the token checks and the lock.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge.testing.fake_wecom import (
    APP_MEDIA_MSGTYPES,
    APPCHAT_CREATE,
    APPCHAT_GET,
    APPCHAT_SEND,
    FakeApp,
    FakeWeCom,
    Message,
    _answer,
    _app_content,
    _new_msgid,
    _Recipients,
    _Reject,
    _replace,
)

APPCHAT_MSGTYPES = frozenset(
    {"text", "image", "voice", "video", "file", "textcard", "news", "mpnews", "markdown"}
)
CHAT_MEMBER_PER_MINUTE = 200
CHAT_MEMBER_PER_DAY = 10_000
NAME_LIMIT = 50
MEMBERS_MIN, MEMBERS_MAX = 2, 2000
_CHATID = re.compile(r"[0-9a-zA-Z]{1,32}")

INVALID_CHATID = 86001
CHAT_NOT_FOUND = 86003
CHAT_NOT_OWN = 86008
CHATID_EXISTS = 86215
INVALID_MEMBER = 86216
API_UNAUTHORIZED = 48002


@dataclass(frozen=True, slots=True)
class FakeChat:
    """One group chat, owned by the app ``agent_id`` that created it."""

    chatid: str
    name: str
    owner: str
    userlist: tuple[str, ...]
    agent_id: int


class FakeAppChats:
    """The three appchat endpoints and their chats, on ``host``'s state and lock."""

    def __init__(self, host: FakeWeCom) -> None:
        self._host = host
        self._denied: set[int] = set()
        self._chats: dict[str, FakeChat] = {}
        self._member_sends: dict[tuple[int, str], deque[float]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/cgi-bin/appchat/create", self._create, methods=["POST"]),
            Route("/cgi-bin/appchat/get", self._get, methods=["GET"]),
            Route("/cgi-bin/appchat/send", self._send, methods=["POST"]),
            Route("/_fake/appchats", self._http_chats, methods=["GET"]),
        ]

    def clear(self) -> None:
        """Forget chats and rate windows (``FakeWeCom.reset``; call with the host's lock held)."""
        self._chats = {}
        self._member_sends = {}

    def deny(self, agent_id: int) -> None:
        """Make app ``agent_id`` one whose visibility is not the root department (48002)."""
        with self._host._lock:
            self._denied.add(agent_id)

    def chats(self) -> list[FakeChat]:
        with self._host._lock:
            return list(self._chats.values())

    def add_chat(self, chat: FakeChat) -> None:
        """Put ``chat`` in place as if its app had created it (no request counted)."""
        with self._host._lock:
            self._chats[chat.chatid] = chat

    async def _http_chats(self, request: Request) -> Response:
        return JSONResponse([asdict(chat) for chat in self.chats()])

    async def _create(self, request: Request) -> Response:
        async def act(app: FakeApp, body: dict[str, Any]) -> Response:
            chat = self._new_chat(app, body)
            with self._host._lock:
                if chat.chatid in self._chats:
                    raise _Reject(CHATID_EXISTS, f"chatid {chat.chatid} exists")
                self._chats[chat.chatid] = chat
            return JSONResponse({"errcode": 0, "errmsg": "ok", "chatid": chat.chatid})

        return await self._handle(APPCHAT_CREATE, request, act)

    async def _get(self, request: Request) -> Response:
        async def act(app: FakeApp, body: dict[str, Any]) -> Response:
            chat = self._own_chat(app, request.query_params.get("chatid"))
            info = {
                "chatid": chat.chatid,
                "name": chat.name,
                "owner": chat.owner,
                "userlist": list(chat.userlist),
                "chat_type": 0,
            }
            return JSONResponse({"errcode": 0, "errmsg": "ok", "chat_info": info})

        return await self._handle(APPCHAT_GET, request, act)

    async def _send(self, request: Request) -> Response:
        async def act(app: FakeApp, body: dict[str, Any]) -> Response:
            chat = self._own_chat(app, body.get("chatid"))
            msgtype = body.get("msgtype")
            if msgtype not in APPCHAT_MSGTYPES:
                raise _Reject(40008, "invalid message type")
            _, content = _app_content(body)
            if msgtype in APP_MEDIA_MSGTYPES:
                self._host._media_of(app, body[msgtype])
            self._deliver(
                chat,
                Message(
                    endpoint=APPCHAT_SEND,
                    msgtype=str(msgtype),
                    content=content,
                    body=body,
                    timestamp=self._host._wall_clock(),
                    agent_id=app.agent_id,
                ),
            )
            return JSONResponse({"errcode": 0, "errmsg": "ok"})

        return await self._handle(APPCHAT_SEND, request, act)

    async def _handle(
        self, endpoint: str, request: Request, act: Callable[[FakeApp, dict[str, Any]], Awaitable[Response]]
    ) -> Response:
        """The checks every appchat call shares: faults, token, root-department visibility, body."""
        host = self._host
        early = await host._begin(endpoint, request)
        if early is not None:
            return early
        try:
            app = host._authorize(request.query_params.get("access_token", ""))
            if app.agent_id in self._denied:
                raise _Reject(API_UNAUTHORIZED, "api forbidden: appchat needs the root department visible")
            body = host._parse_message(await request.body()) if request.method == "POST" else {}
            response = await act(app, body)
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        return response

    def _new_chat(self, app: FakeApp, body: dict[str, Any]) -> FakeChat:
        chatid = body.get("chatid") or secrets.token_hex(8)
        if not isinstance(chatid, str) or not _CHATID.fullmatch(chatid):
            raise _Reject(INVALID_CHATID, "invalid chatid")
        users = body.get("userlist")
        if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
            raise _Reject(40058, "invalid Request Parameter, userlist")
        members = tuple(dict.fromkeys(users))
        if not MEMBERS_MIN <= len(members) <= MEMBERS_MAX:
            raise _Reject(40058, f"invalid Request Parameter, userlist needs {MEMBERS_MIN}-{MEMBERS_MAX}")
        known = self._host.users
        unknown = [u for u in members if known is not None and u.casefold() not in known]
        if unknown:
            raise _Reject(INVALID_MEMBER, f"invalid chat member {unknown[0]}")
        owner = body.get("owner") or members[0]
        if owner not in members:
            raise _Reject(40058, "invalid Request Parameter, owner must be in userlist")
        name = body.get("name", "")
        return FakeChat(chatid, str(name)[:NAME_LIMIT], str(owner), members, app.agent_id)

    def _own_chat(self, app: FakeApp, chatid: object) -> FakeChat:
        if not isinstance(chatid, str) or not _CHATID.fullmatch(chatid):
            raise _Reject(INVALID_CHATID, "invalid chatid")
        with self._host._lock:
            chat = self._chats.get(chatid)
        if chat is None:
            raise _Reject(CHAT_NOT_FOUND, "chatid not found")
        if chat.agent_id != app.agent_id:
            raise _Reject(CHAT_NOT_OWN, "not allowed to operate a chat another app created")
        return chat

    def _deliver(self, chat: FakeChat, record: Message) -> None:
        """Record the message for the members under their limits; drop it for the rest."""
        host = self._host
        with host._lock:
            now = host._clock()
            received, over_minute, over_day = [], [], []
            for member in chat.userlist:
                window = self._member_sends.setdefault((chat.agent_id, member.casefold()), deque())
                while window and now - window[0] >= 86400:
                    window.popleft()
                if sum(1 for t in window if now - t < 60) >= CHAT_MEMBER_PER_MINUTE:
                    over_minute.append(member)
                elif len(window) >= CHAT_MEMBER_PER_DAY:
                    over_day.append(member)
                else:
                    window.append(now)
                    received.append(member)
            msgid = _new_msgid()
            if received:
                host._delivered.append(_replace(record, msgid, _Recipients(received)))
            for reason, members in (
                ("chat_member_minute_limit", over_minute),
                ("chat_member_day_limit", over_day),
            ):
                if members:
                    host._dropped.append(_replace(record, msgid, _Recipients(list(members)), reason=reason))
