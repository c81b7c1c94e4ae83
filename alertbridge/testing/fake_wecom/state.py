"""The state every part of the fake shares, and the steps every request takes.

``FakeWeCom`` is assembled from one class per responsibility (tokens, app
messages, cards, contacts, robots, media, control); ``FakeState`` declares
the attributes they all read, so each part type-checks on its own, and holds
the steps common to all endpoints: counting a request and applying its
fault, checking the access token, and refusing marked bodies.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from alertbridge.testing.fake_wecom.faults import Fault, _FaultRate, _sleep_unless_disconnected
from alertbridge.testing.fake_wecom.parsing import _answer, _parse_body
from alertbridge.testing.fake_wecom.records import (
    CardUpdate,
    FakeApp,
    Message,
    Upload,
    _IssuedCode,
    _Reject,
    _Token,
)
from alertbridge.testing.fake_wecom.spec import Clock

if TYPE_CHECKING:
    from alertbridge.testing.fake_appchat import FakeAppChats
    from alertbridge.testing.fake_media import FakeMedia
    from alertbridge.testing.fake_menu import FakeMenus
    from alertbridge.testing.fake_recall import FakeRecall


class FakeState:
    """The attributes ``FakeWeCom.__init__`` sets, and the per-request steps."""

    apps: tuple[FakeApp, ...]
    robot_keys: frozenset[str]
    users: frozenset[str] | None
    parties: frozenset[str] | None
    tags: frozenset[str] | None
    unlicensed_users: frozenset[str]
    user_departments: dict[str, list[int]]
    tag_members: dict[str, tuple[list[str], list[int]]]
    contact_errcode: int | None
    token_lifetime: int
    response_code_lifetime: float
    media_lifetime: float
    recall: FakeRecall
    appchats: FakeAppChats
    media: FakeMedia
    menus: FakeMenus
    app: Starlette
    _clock: Clock
    _wall_clock: Clock
    _random: random.Random
    _lock: threading.Lock
    _tokens: dict[str, _Token]
    _disabled_robots: set[str]
    _media: dict[str, Upload]
    _delivered: list[Message]
    _dropped: list[Message]
    _requests: dict[str, int]
    _fault_queues: dict[str, deque[Fault]]
    _fault_rates: dict[str, _FaultRate]
    _member_sends: dict[tuple[int, str], deque[float]]
    _robot_sends: dict[str, deque[float]]
    _seen_bodies: dict[tuple[int, str], tuple[float, str]]
    _task_ids: set[tuple[int, str]]
    _response_codes: dict[str, _IssuedCode]
    _card_updates: list[CardUpdate]
    _uploads: list[Upload]
    _refused_texts: dict[str, tuple[int, str]]

    async def _begin(self, endpoint: str, request: Request) -> Response | None:
        """Count the request and apply any injected fault; a response ends the request."""
        with self._lock:
            self._requests[endpoint] += 1
            fault = self._take_fault(endpoint)
        if fault is None:
            return None
        request.state.answer_delay = fault.answer_delay
        if fault.delay > 0:
            await request.body()  # read first: is_disconnected() would consume it
            if await _sleep_unless_disconnected(request, fault.delay):
                return Response(status_code=499)  # nobody is listening any more
        if fault.status is not None:
            return PlainTextResponse(f"<html><body>{fault.status} injected</body></html>", fault.status)
        if fault.errcode is not None:
            return _answer(fault.errcode, fault.errmsg)
        return None

    def _take_fault(self, endpoint: str) -> Fault | None:
        queue = self._fault_queues[endpoint]
        if queue:
            return queue.popleft()
        rate = self._fault_rates.get(endpoint)
        if rate is not None and self._random.random() < rate.probability:
            return rate.fault
        return None

    def _authorize(self, token: str) -> FakeApp:
        if not token:
            raise _Reject(41001, "access_token missing")
        with self._lock:
            issued = self._tokens.get(token)
            now = self._clock()
        if issued is None:
            raise _Reject(40014, "invalid access_token")
        if now >= issued.expires_at:
            raise _Reject(42001, "access_token expired")
        return issued.app

    def _parse_message(self, raw: bytes) -> dict[str, Any]:
        """``_parse_body``, then the refusals ``refuse_text`` set up."""
        body = _parse_body(raw)
        text = raw.decode("utf-8")
        with self._lock:
            refused = [answer for marker, answer in self._refused_texts.items() if marker in text]
        if refused:
            raise _Reject(*refused[0])
        return body

    def _issue_code(self, agent_id: int, task_id: str) -> str:
        """Record and return a fresh response_code (call with the lock held)."""
        code = secrets.token_urlsafe(32)
        self._response_codes[code] = _IssuedCode(agent_id, task_id, self._clock())
        return code
