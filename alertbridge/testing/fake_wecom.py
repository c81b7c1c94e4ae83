"""A fake WeCom (企业微信) server API that enforces what the real one enforces.

It serves ``gettoken``, ``message/send`` and ``webhook/send`` with the real
errcodes (docs/wecom-api.md §4-5), so the client, the channels and end-to-end
tests run against the same checks WeCom would apply:

- tokens per app, expiring after ``token_lifetime`` (42001), unknown (40014),
  missing (41001); wrong corp id (40013) or secret (40001);
- request bodies must be UTF-8 JSON without ``\\uXXXX`` escapes (40033);
- content limits in UTF-8 bytes: app text 2048 (45002), app markdown 2048
  (40058), robot text 2048, markdown and markdown_v2 4096 (40058);
- recipients: none (82001), some unknown (listed in ``invaliduser``, the rest
  still delivered), all unknown (81013);
- ``enable_duplicate_check``: an identical request within the interval is
  answered ok but not delivered again;
- per app and member at most 30 messages a minute and 1000 an hour; the
  excess is answered ok and **silently dropped**, as WeCom does;
- per robot at most 20 messages a minute, then 45009;
- template cards (docs §4.3): ``task_id`` format (``[A-Za-z0-9_-@]``, at most
  128 bytes) and uniqueness per app (40058), required for interaction cards;
  ``button_interaction`` needs ``main_title.title`` or ``sub_title_text``
  (42033) and 1-6 buttons with a ``text`` (42038) and a unique ``key`` of at
  most 1024 bytes (42039); interaction cards are answered with a fresh
  ``response_code``;
- ``message/update_template_card`` (docs §4.4): same token and agentid checks
  as message/send; the ``response_code`` must be one the fake issued for this
  app, unused and younger than ``response_code_lifetime`` (24 h), else 60140;
  each code works **once**. ``new_response_code_for(task_id)`` mints the fresh
  code WeCom puts into each click callback;
- ``media/upload`` (docs §7): same token checks; ``type`` one of
  image/voice/video/file (40004); a multipart part ``media`` with content
  (44001) of more than 5 bytes (40006) and at most the type's limit (image
  10 MB: 40009, video 10 MB: 40011, voice 2 MB and file 20 MB: 40006); an
  image must be named ``.jpg``/``.jpeg``/``.png`` and be PNG or JPEG, a
  voice AMR, a video MP4 (40005, WeCom's "invalid file type"). Media ids are valid for
  ``media_lifetime`` (3 days) for every app of the uploading corp: app
  ``image``/``voice``/``video``/``file`` messages naming an unknown, expired
  or foreign media id get 40007;
- textcard, news and notice cards: see ``fake_wecom_msgtypes``;
- robot ``image`` messages (docs §5): ``base64`` must decode, ``md5`` must be
  the MD5 of the decoded bytes, at most 2 MB, PNG or JPEG (40058 otherwise);
- ``media/get`` and the robot's ``webhook/upload_media`` (whose ids robot
  ``file``/``voice`` messages must name): in ``alertbridge.testing.fake_media``
  (``fake.media``);
- the contact reads ``user/get`` (a member's ``department`` list; unknown
  member 60111) and ``tag/get`` (``userlist`` and ``partylist``; unknown tag
  40068), from ``user_departments`` and ``tag_members``; ``contact_errcode``
  (e.g. 60011, 48002) makes both answer as to an app without contact
  permission;
- ``menu/create`` (``fake.menus``, in alertbridge.testing.fake_menu).

Tests inject faults (an errcode, an HTTP status, a delay) per endpoint, expire
all tokens, and inspect what was delivered or dropped, from Python or over
HTTP under ``/_fake/``. Time comes from an injectable clock.

Run it standalone for manual trials::

    python -m alertbridge.testing.fake_wecom --port 8081 \\
        --corp-id ww-test --secret s3cret --agent-id 1000002 --robot-key robot-key-1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import email.message
import hashlib
import json
import random
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alertbridge.testing.fake_wecom_msgtypes import (
    NOTICE_CARD_TYPES,
    app_section_refusal,
    notice_card_refusal,
    robot_section_refusal,
)
from alertbridge.testing.server import ServerThread

GETTOKEN = "gettoken"
MESSAGE_SEND = "message/send"
UPDATE_TEMPLATE_CARD = "message/update_template_card"
WEBHOOK_SEND = "webhook/send"
MEDIA_UPLOAD = "media/upload"
AGENT_GET = "agent/get"
USER_GET = "user/get"
TAG_GET = "tag/get"
# Served by modules of their own (fake_recall, fake_appchat), registered in FakeWeCom.__init__.
MESSAGE_RECALL = "message/recall"
APPCHAT_CREATE = "appchat/create"
APPCHAT_GET = "appchat/get"
APPCHAT_SEND = "appchat/send"
ENDPOINTS = (
    GETTOKEN,
    MESSAGE_SEND,
    UPDATE_TEMPLATE_CARD,
    WEBHOOK_SEND,
    MEDIA_UPLOAD,
    AGENT_GET,
    USER_GET,
    TAG_GET,
    MESSAGE_RECALL,
    APPCHAT_CREATE,
    APPCHAT_GET,
    APPCHAT_SEND,
)

DEFAULT_CORP_ID = "ww0000fakecorp"
DEFAULT_SECRET = "fake-app-secret-0123456789"
DEFAULT_AGENT_ID = 1000002
DEFAULT_ROBOT_KEY = "fake-robot-key-0123456789"

APP_CONTENT_LIMIT = 2048
ROBOT_TEXT_LIMIT = 2048
ROBOT_MARKDOWN_LIMIT = 4096
MEMBER_PER_MINUTE = 30
MEMBER_PER_HOUR = 1000
ROBOT_PER_MINUTE = 20
DEFAULT_DUPLICATE_INTERVAL = 1800
MAX_DUPLICATE_INTERVAL = 4 * 3600
# The send-answer field description says 24 h, the 2025 update page 72 h
# (docs §4.4): the fake holds to the stricter one.
RESPONSE_CODE_LIFETIME = 24 * 3600
MEDIA_LIFETIME = 3 * 24 * 3600
MEDIA_MIN_BYTES = 6  # "every file > 5 bytes"
# media/upload limits per type: (bytes, errcode when over).
MEDIA_LIMITS = {
    "image": (10 * 1024 * 1024, 40009),
    "voice": (2 * 1024 * 1024, 40006),
    "video": (10 * 1024 * 1024, 40011),
    "file": (20 * 1024 * 1024, 40006),
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ROBOT_IMAGE_LIMIT = 2 * 1024 * 1024
APP_MEDIA_MSGTYPES = frozenset({"image", "voice", "video", "file"})
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

CARD_TYPES = frozenset(
    {"text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"}
)
# Cards that call back and are answered with a response_code; they need a task_id.
INTERACTION_CARD_TYPES = frozenset({"button_interaction", "vote_interaction", "multiple_interaction"})
TASK_ID_LIMIT = 128
BUTTON_LIMIT = 6
BUTTON_KEY_LIMIT = 1024
_TASK_ID = re.compile(r"[A-Za-z0-9_\-@]+")

APP_MSGTYPES = frozenset(
    {
        "text",
        "markdown",
        "image",
        "voice",
        "video",
        "file",
        "textcard",
        "news",
        "mpnews",
        "miniprogram_notice",
        "template_card",
    }
)
ROBOT_MSGTYPES = frozenset(
    {"text", "markdown", "markdown_v2", "image", "news", "file", "voice", "template_card"}
)

# A JSON \uXXXX escape: preceded by an even number of backslashes (so "\\u"
# in content, an escaped backslash followed by "u", does not count).
_UNICODE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u[0-9a-fA-F]{4}")

Clock = Callable[[], float]


class ManualClock:
    """A clock that moves only when told to; pass it as ``clock`` to the fake and the client."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass(frozen=True, slots=True)
class FakeApp:
    """One self-built app: ``corp_id`` + ``secret`` identify it, ``agent_id`` names it in messages."""

    corp_id: str = DEFAULT_CORP_ID
    secret: str = DEFAULT_SECRET
    agent_id: int = DEFAULT_AGENT_ID


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


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the fake handled it: delivered, or dropped with a ``reason``.

    For app messages the recipients are the ones it reached (or, when
    dropped, the ones it did not); for robot messages ``mentioned*`` hold the
    @-mentions. ``timestamp`` is wall-clock seconds.
    """

    endpoint: str
    msgtype: str
    content: str | None
    body: Mapping[str, Any]
    timestamp: float
    msgid: str = ""
    agent_id: int | None = None
    robot_key: str | None = None
    to_user: tuple[str, ...] = ()
    to_party: tuple[str, ...] = ()
    to_tag: tuple[str, ...] = ()
    mentioned: tuple[str, ...] = ()
    mentioned_mobiles: tuple[str, ...] = ()
    reason: str = ""  # why it was dropped: duplicate, member_minute_limit, member_hour_limit
    # Template cards: the card's task_id and the response_code the send answered with.
    task_id: str = ""
    response_code: str = ""
    # App media messages: the media_id; app and robot images: the image bytes' sha256.
    media_id: str = ""
    image_sha256: str = ""

    @property
    def recipients(self) -> tuple[str, ...]:
        return (*self.to_user, *self.to_party, *self.to_tag)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CardUpdate:
    """One accepted ``message/update_template_card`` call.

    Exactly one of ``replace_name`` (the buttons were greyed out with this
    label) and ``template_card`` (the card was replaced) is set. ``task_id``
    is that of the card the response_code belongs to. ``timestamp`` is
    wall-clock seconds.
    """

    agent_id: int
    task_id: str
    response_code: str
    userids: tuple[str, ...]
    partyids: tuple[str, ...]
    tagids: tuple[str, ...]
    atall: bool
    replace_name: str | None
    template_card: Mapping[str, Any] | None
    body: Mapping[str, Any]
    timestamp: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Upload:
    """One accepted ``media/upload``: what WeCom would now hold under ``media_id``.

    ``created_at`` is on the fake's clock (media expire ``media_lifetime``
    after it), ``timestamp`` wall-clock seconds.
    """

    media_id: str
    corp_id: str
    agent_id: int
    type: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: float
    timestamp: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Part:
    """One part of a multipart/form-data body."""

    filename: str | None
    content_type: str
    data: bytes


@dataclass(slots=True)
class _IssuedCode:
    agent_id: int
    task_id: str
    issued_at: float
    used: bool = False


@dataclass(frozen=True, slots=True)
class _CardCheck:
    """What the send path needs to know about a valid template card."""

    task_id: str
    interactive: bool


@dataclass(slots=True)
class _Token:
    app: FakeApp
    expires_at: float


@dataclass(slots=True)
class _FaultRate:
    fault: Fault
    probability: float


class _Reject(Exception):
    """Ends request handling with an errcode answer (internal to the fake)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass(slots=True)
class _Recipients:
    users: list[str] = field(default_factory=list)
    parties: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


class FakeWeCom:
    """The fake's state and its ASGI app (``.app``).

    ``users``/``parties``/``tags``: the ids that exist; ``None`` means every id
    exists. ``user_departments`` (user id → department ids; others are in
    department 1) and ``tag_members`` (tag id → (user ids, department ids))
    feed ``user/get`` and ``tag/get``; ``contact_errcode`` answers both with
    that errcode instead. ``unlicensed_users`` exist but have no API license: they are listed
    in ``unlicenseduser`` and get nothing. State is guarded by a lock because
    the server runs in its own thread while tests inspect it from theirs.
    """

    def __init__(
        self,
        apps: Iterable[FakeApp] = (FakeApp(),),
        robot_keys: Iterable[str] = (DEFAULT_ROBOT_KEY,),
        *,
        users: Iterable[str] | None = None,
        parties: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        unlicensed_users: Iterable[str] = (),
        user_departments: Mapping[str, Iterable[int]] | None = None,
        tag_members: Mapping[str, tuple[Iterable[str], Iterable[int]]] | None = None,
        contact_errcode: int | None = None,
        token_lifetime: int = 7200,
        response_code_lifetime: float = RESPONSE_CODE_LIFETIME,
        media_lifetime: float = MEDIA_LIFETIME,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        seed: int | None = None,
    ) -> None:
        self.apps = tuple(apps)
        self.robot_keys = frozenset(robot_keys)
        self.users = _folded(users)
        self.parties = None if parties is None else frozenset(parties)
        self.tags = None if tags is None else frozenset(tags)
        self.unlicensed_users = _folded(unlicensed_users) or frozenset()
        self.user_departments = {u.casefold(): list(d) for u, d in (user_departments or {}).items()}
        self.tag_members = {t: (list(u), list(p)) for t, (u, p) in (tag_members or {}).items()}
        self.contact_errcode = contact_errcode
        self.token_lifetime = token_lifetime
        self.response_code_lifetime = response_code_lifetime
        self.media_lifetime = media_lifetime
        self._clock = clock
        self._wall_clock = wall_clock
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._disabled_robots: set[str] = set()
        # Uploaded media stay valid across reset(), as tokens do.
        self._media: dict[str, Upload] = {}
        # Endpoints in modules of their own; they import this one.
        from alertbridge.testing.fake_appchat import FakeAppChats
        from alertbridge.testing.fake_media import FakeMedia
        from alertbridge.testing.fake_menu import FakeMenus
        from alertbridge.testing.fake_recall import FakeRecall

        self.recall = FakeRecall(self)
        self.appchats = FakeAppChats(self)
        self.media = FakeMedia(self)
        self.menus = FakeMenus(self)
        self._clear()
        self.app = Starlette(
            routes=[
                *self._routes(),
                *self.recall.routes(),
                *self.appchats.routes(),
                *self.media.routes(),
                *self.menus.routes(),
            ]
        )

    # ---- control (Python API) ----------------------------------------

    def add_fault(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with ``fault``."""
        _check_endpoint(endpoint)
        with self._lock:
            self._fault_queues[endpoint].extend([fault] * times)

    def set_fault_rate(self, endpoint: str, fault: Fault, probability: float) -> None:
        """Answer each request to ``endpoint`` with ``fault`` with this probability (0 clears)."""
        _check_endpoint(endpoint)
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        with self._lock:
            if probability:
                self._fault_rates[endpoint] = _FaultRate(fault, probability)
            else:
                self._fault_rates.pop(endpoint, None)

    def clear_faults(self) -> None:
        with self._lock:
            for queue in self._fault_queues.values():
                queue.clear()
            self._fault_rates.clear()

    def refuse_text(self, text: str, errcode: int = 40033, errmsg: str = "invalid charset") -> None:
        """Refuse every message/send and webhook/send request whose body contains
        ``text`` with ``errcode`` — a stand-in for content WeCom refuses, such as a
        control character (40033), whatever templates do to the real one."""
        with self._lock:
            self._refused_texts[text] = (errcode, errmsg)

    def expire_tokens(self) -> None:
        """Expire every token issued so far (the next use answers 42001)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = float("-inf")

    def disable_robot(self, key: str) -> None:
        """Make ``key``'s robot answer 93004, as a robot an admin switched off."""
        with self._lock:
            self._disabled_robots.add(key)

    def new_response_code_for(self, task_id: str, *, agent_id: int | None = None) -> str:
        """Mint a fresh one-use response_code for the card ``task_id``, as WeCom puts
        one into every ``template_card_event`` callback.

        ``agent_id`` picks the app when several sent a card with this task_id.

        Raises:
            ValueError: no card (or more than one) with this task_id was sent.
        """
        with self._lock:
            owners = [a for (a, t) in self._task_ids if t == task_id and agent_id in (None, a)]
            if len(owners) != 1:
                found = "no card" if not owners else "cards of several apps"
                raise ValueError(f"{found} with task_id {task_id!r} was sent; pass agent_id")
            return self._issue_code(owners[0], task_id)

    def set_contacts(
        self,
        *,
        user_departments: Mapping[str, Iterable[int]] | None = None,
        tag_members: Mapping[str, tuple[Iterable[str], Iterable[int]]] | None = None,
        contact_errcode: int | None = None,
    ) -> None:
        """Replace what ``user/get`` and ``tag/get`` answer (``None`` keeps a table;
        ``contact_errcode`` is always set: None answers normally again)."""
        with self._lock:
            if user_departments is not None:
                self.user_departments = {u.casefold(): list(d) for u, d in user_departments.items()}
            if tag_members is not None:
                self.tag_members = {t: (list(u), list(p)) for t, (u, p) in tag_members.items()}
            self.contact_errcode = contact_errcode

    def expire_media(self) -> None:
        """Expire every media id uploaded so far (messages naming one answer 40007)."""
        with self._lock:
            for media_id, upload in self._media.items():
                self._media[media_id] = replace(upload, created_at=float("-inf"))

    def reset(self) -> None:
        """Forget messages, uploads, card task ids and response codes, counters,
        faults, rate windows and duplicate memory.

        Issued tokens and uploaded media ids stay valid, so clients holding
        one keep working.
        """
        with self._lock:
            self._clear()

    # ---- inspection (Python API) -------------------------------------

    def messages(self, endpoint: str | None = None) -> list[Message]:
        """Delivered messages, oldest first, optionally of one endpoint."""
        with self._lock:
            return [m for m in self._delivered if endpoint is None or m.endpoint == endpoint]

    def uploads(self) -> list[Upload]:
        """Accepted ``media/upload`` calls, oldest first."""
        with self._lock:
            return list(self._uploads)

    def card_updates(self) -> list[CardUpdate]:
        """Accepted ``message/update_template_card`` calls, oldest first."""
        with self._lock:
            return list(self._card_updates)

    def dropped(self) -> list[Message]:
        """Messages answered ok but not delivered (duplicates, per-member rate limits)."""
        with self._lock:
            return list(self._dropped)

    @property
    def gettoken_calls(self) -> int:
        return self.request_count(GETTOKEN)

    def request_count(self, endpoint: str) -> int:
        """Requests received by ``endpoint``, whatever their outcome."""
        with self._lock:
            return self._requests[endpoint]

    def issued_tokens(self) -> list[str]:
        """Every access token handed out (tests check that none leaks into logs or errors)."""
        with self._lock:
            return list(self._tokens)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "gettoken_calls": self._requests[GETTOKEN],
                "requests": dict(self._requests),
                "delivered": len(self._delivered),
                "dropped": len(self._dropped),
                "tokens_issued": len(self._tokens),
            }

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve the fake on a real uvicorn server in a thread; yields its base URL."""
        with ServerThread(self.app, host, port) as server:
            yield server.base_url

    # ---- internals -----------------------------------------------------

    def _clear(self) -> None:
        self._delivered: list[Message] = []
        self._dropped: list[Message] = []
        self._requests: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._fault_queues: dict[str, deque[Fault]] = {e: deque() for e in ENDPOINTS}
        self._fault_rates: dict[str, _FaultRate] = {}
        self._member_sends: dict[tuple[int, str], deque[float]] = {}
        self._robot_sends: dict[str, deque[float]] = {}
        self._seen_bodies: dict[tuple[int, str], tuple[float, str]] = {}
        self._task_ids: set[tuple[int, str]] = set()
        self._response_codes: dict[str, _IssuedCode] = {}
        self._card_updates: list[CardUpdate] = []
        self._uploads: list[Upload] = []
        self._refused_texts: dict[str, tuple[int, str]] = {}
        self.recall.clear()
        self.appchats.clear()

    def _issue_code(self, agent_id: int, task_id: str) -> str:
        """Record and return a fresh response_code (call with the lock held)."""
        code = secrets.token_urlsafe(32)
        self._response_codes[code] = _IssuedCode(agent_id, task_id, self._clock())
        return code

    def _routes(self) -> list[Route]:
        return [
            Route("/cgi-bin/gettoken", self._gettoken, methods=["GET"]),
            Route("/cgi-bin/agent/get", self._agent_get, methods=["GET"]),
            Route("/cgi-bin/message/send", self._message_send, methods=["POST"]),
            Route("/cgi-bin/message/update_template_card", self._update_template_card, methods=["POST"]),
            Route("/cgi-bin/webhook/send", self._webhook_send, methods=["POST"]),
            Route("/cgi-bin/media/upload", self._media_upload, methods=["POST"]),
            Route("/cgi-bin/user/get", self._user_get, methods=["GET"]),
            Route("/cgi-bin/tag/get", self._tag_get, methods=["GET"]),
            Route("/_fake/contacts", self._http_contacts, methods=["POST"]),
            Route("/_fake/uploads", self._http_uploads, methods=["GET"]),
            Route("/_fake/expire-media", self._http_expire_media, methods=["POST"]),
            Route("/_fake/messages", self._http_messages, methods=["GET"]),
            Route("/_fake/dropped", self._http_dropped, methods=["GET"]),
            Route("/_fake/card-updates", self._http_card_updates, methods=["GET"]),
            Route("/_fake/response-codes", self._http_response_codes, methods=["POST"]),
            Route("/_fake/stats", self._http_stats, methods=["GET"]),
            Route("/_fake/reset", self._http_reset, methods=["POST"]),
            Route("/_fake/faults", self._http_faults, methods=["POST", "DELETE"]),
            Route("/_fake/expire-tokens", self._http_expire_tokens, methods=["POST"]),
        ]

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

    async def _message_send(self, request: Request) -> Response:
        early = await self._begin(MESSAGE_SEND, request)
        if early is not None:
            return early
        try:
            app = self._authorize(request.query_params.get("access_token", ""))
            body = self._parse_message(await request.body())
            answer = self._accept_app_message(app, body)
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        await asyncio.sleep(getattr(request.state, "answer_delay", 0.0))
        return answer

    def _parse_message(self, raw: bytes) -> dict[str, Any]:
        """``_parse_body``, then the refusals ``refuse_text`` set up."""
        body = _parse_body(raw)
        text = raw.decode("utf-8")
        with self._lock:
            refused = [answer for marker, answer in self._refused_texts.items() if marker in text]
        if refused:
            raise _Reject(*refused[0])
        return body

    async def _user_get(self, request: Request) -> Response:
        early = await self._begin(USER_GET, request)
        if early is not None:
            return early
        try:
            self._authorize(request.query_params.get("access_token", ""))
            userid = request.query_params.get("userid", "")
            with self._lock:
                denied = self.contact_errcode
                departments = self.user_departments.get(userid.casefold(), [1])
            if denied is not None:
                raise _Reject(denied, "no privilege to access/modify contact/party/agent")
            if not userid or (self.users is not None and userid.casefold() not in self.users):
                raise _Reject(60111, "userid not found")
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "userid": userid, "name": userid, "department": departments}
        )

    async def _tag_get(self, request: Request) -> Response:
        early = await self._begin(TAG_GET, request)
        if early is not None:
            return early
        try:
            self._authorize(request.query_params.get("access_token", ""))
            tagid = request.query_params.get("tagid", "")
            with self._lock:
                denied = self.contact_errcode
                members = self.tag_members.get(tagid)
            if denied is not None:
                raise _Reject(denied, "no privilege to access/modify contact/party/agent")
            if members is None:
                raise _Reject(40068, "invalid tagid")
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        users, parties = members
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "tagname": f"tag-{tagid}",
                "userlist": [{"userid": u, "name": u} for u in users],
                "partylist": parties,
            }
        )

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

    def _accept_app_message(self, app: FakeApp, body: dict[str, Any]) -> Response:
        agent_id = _agent_id(body.get("agentid"))
        if agent_id is None:
            raise _Reject(40056, "invalid agentid")
        if agent_id != app.agent_id:
            raise _Reject(301002, "not allow operate another agent with this accesstoken")
        msgtype, content = _app_content(body)
        card = _check_card(body["template_card"], sent=True) if msgtype == "template_card" else None
        media = self._media_of(app, body[msgtype]) if msgtype in APP_MEDIA_MSGTYPES else None
        wanted = _Recipients(
            users=_ids(body, "touser", 1000),
            parties=_ids(body, "toparty", 100),
            tags=_ids(body, "totag", 100),
        )
        if not (wanted.users or wanted.parties or wanted.tags):
            raise _Reject(82001, "All touser & toparty & totag invalid")
        valid, invalid, unlicensed = self._resolve(wanted)
        if not (valid.users or valid.parties or valid.tags or unlicensed):
            raise _Reject(81013, "user & party & tag all invalid")
        answer = {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "|".join(u.lower() for u in invalid.users),
            "invalidparty": "|".join(invalid.parties),
            "invalidtag": "|".join(invalid.tags),
            "unlicenseduser": "|".join(u.lower() for u in unlicensed),
        }
        with self._lock:
            now = self._clock()
            msgid = self._duplicate_msgid(agent_id, body, now)
            record = Message(
                endpoint=MESSAGE_SEND,
                msgtype=msgtype,
                content=content,
                body=body,
                timestamp=self._wall_clock(),
                agent_id=agent_id,
                task_id=card.task_id if card is not None else "",
                media_id=media.media_id if media is not None else "",
                image_sha256=media.sha256 if media is not None and media.type == "image" else "",
            )
            if msgid is not None:
                # An identical request in the interval: not delivered, so its
                # task_id is not taken again and no new response_code issued.
                self._dropped.append(_replace(record, msgid, valid, reason="duplicate"))
            else:
                if card is not None and card.task_id:
                    if (agent_id, card.task_id) in self._task_ids:
                        raise _Reject(40058, f"invalid Request Parameter, task_id {card.task_id} exist")
                    self._task_ids.add((agent_id, card.task_id))
                if card is not None and card.interactive:
                    response_code = self._issue_code(agent_id, card.task_id)
                    answer["response_code"] = response_code
                    record = replace(record, response_code=response_code)
                msgid = _new_msgid()
                self._remember_body(agent_id, body, now, msgid)
                self._deliver_app(record, msgid, valid, now)
        answer["msgid"] = msgid
        return JSONResponse(answer)

    def _media_of(self, app: FakeApp, section: Mapping[str, Any]) -> Upload:
        """The live upload a media message names (media ids are shared within a corp)."""
        media_id = section.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise _Reject(40007, "invalid media_id, media_id is missing")
        with self._lock:
            upload = self._media.get(media_id)
            now = self._clock()
        if upload is None or upload.corp_id != app.corp_id:
            raise _Reject(40007, "invalid media_id")
        if now - upload.created_at >= self.media_lifetime:
            raise _Reject(40007, "invalid media_id, media_id expired")
        return upload

    async def _media_upload(self, request: Request) -> Response:
        early = await self._begin(MEDIA_UPLOAD, request)
        if early is not None:
            return early
        try:
            app = self._authorize(request.query_params.get("access_token", ""))
            media_type = request.query_params.get("type", "")
            if media_type not in MEDIA_LIMITS:
                raise _Reject(40004, "invalid media type")
            parts = _parse_multipart(request.headers.get("content-type", ""), await request.body())
            part = parts.get("media")
            if part is None or not part.data:
                raise _Reject(44001, "empty media data")
            _check_media(media_type, part)
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        wall = self._wall_clock()
        upload = Upload(
            media_id=secrets.token_urlsafe(32),
            corp_id=app.corp_id,
            agent_id=app.agent_id,
            type=media_type,
            filename=part.filename or "",
            content_type=part.content_type,
            size=len(part.data),
            sha256=hashlib.sha256(part.data).hexdigest(),
            created_at=self._clock(),
            timestamp=wall,
        )
        with self._lock:
            self._media[upload.media_id] = upload
            self._uploads.append(upload)
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "type": media_type,
                "media_id": upload.media_id,
                "created_at": str(int(wall)),
            }
        )

    async def _update_template_card(self, request: Request) -> Response:
        early = await self._begin(UPDATE_TEMPLATE_CARD, request)
        if early is not None:
            return early
        try:
            app = self._authorize(request.query_params.get("access_token", ""))
            body = _parse_body(await request.body())
            return self._accept_card_update(app, body)
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)

    def _accept_card_update(self, app: FakeApp, body: dict[str, Any]) -> Response:
        agent_id = _agent_id(body.get("agentid"))
        if agent_id is None:
            raise _Reject(40056, "invalid agentid")
        if agent_id != app.agent_id:
            raise _Reject(301002, "not allow operate another agent with this accesstoken")
        code = body.get("response_code")
        if not isinstance(code, str) or not code:
            raise _Reject(40058, "invalid Request Parameter, response_code is missing")
        userids = _id_list(body, "userids", 1000)
        partyids = _id_list(body, "partyids", 100)
        tagids = _id_list(body, "tagids", 100)
        atall = body.get("atall", 0)
        if atall not in (0, 1) or isinstance(atall, bool):
            raise _Reject(40058, "invalid Request Parameter, atall must be 0 or 1")
        replace_name, new_card = _card_replacement(body)
        with self._lock:
            issued = self._response_codes.get(code)
            now = self._clock()
            if issued is None or issued.agent_id != agent_id:
                raise _Reject(60140, "invalid response_code")
            if issued.used:
                raise _Reject(60140, "invalid response_code, response_code has been used")
            if now - issued.issued_at >= self.response_code_lifetime:
                raise _Reject(60140, "invalid response_code, response_code expired")
            issued.used = True
            self._card_updates.append(
                CardUpdate(
                    agent_id=agent_id,
                    task_id=issued.task_id,
                    response_code=code,
                    userids=userids,
                    partyids=partyids,
                    tagids=tagids,
                    atall=atall == 1,
                    replace_name=replace_name,
                    template_card=new_card,
                    body=body,
                    timestamp=self._wall_clock(),
                )
            )
        return JSONResponse({"errcode": 0, "errmsg": "ok", "invaliduser": []})

    def _resolve(self, wanted: _Recipients) -> tuple[_Recipients, _Recipients, list[str]]:
        """Split recipients into (deliverable, invalid, unlicensed)."""
        valid, invalid, unlicensed = _Recipients(), _Recipients(), []
        for user in wanted.users:
            folded = user.casefold()
            if user == "@all" or self.users is None or folded in self.users:
                if folded in self.unlicensed_users:
                    unlicensed.append(user)
                else:
                    valid.users.append(user)
            else:
                invalid.users.append(user)
        if "@all" in wanted.users:  # party and tag are ignored when sending to everyone
            return valid, invalid, unlicensed
        for party in wanted.parties:
            (valid if self.parties is None or party in self.parties else invalid).parties.append(party)
        for tag in wanted.tags:
            (valid if self.tags is None or tag in self.tags else invalid).tags.append(tag)
        return valid, invalid, unlicensed

    def _duplicate_msgid(self, agent_id: int, body: dict[str, Any], now: float) -> str | None:
        """The msgid of an identical request still inside its duplicate-check interval."""
        if body.get("enable_duplicate_check") not in (1, "1", True):
            return None
        seen = self._seen_bodies.get((agent_id, _canonical(body)))
        if seen is None:
            return None
        seen_at, msgid = seen
        if now - seen_at < _duplicate_interval(body):
            return msgid
        return None

    def _remember_body(self, agent_id: int, body: dict[str, Any], now: float, msgid: str) -> None:
        if body.get("enable_duplicate_check") in (1, "1", True):
            self._seen_bodies[(agent_id, _canonical(body))] = (now, msgid)

    def _deliver_app(self, record: Message, msgid: str, valid: _Recipients, now: float) -> None:
        """Record the delivery, dropping members over their per-app rate limits (silently, as WeCom)."""
        delivered, over_minute, over_hour = [], [], []
        for user in valid.users:
            if user == "@all":
                delivered.append(user)
                continue
            window = self._member_sends.setdefault((record.agent_id or 0, user.casefold()), deque())
            while window and now - window[0] >= 3600:
                window.popleft()
            if sum(1 for t in window if now - t < 60) >= MEMBER_PER_MINUTE:
                over_minute.append(user)
            elif len(window) >= MEMBER_PER_HOUR:
                over_hour.append(user)
            else:
                window.append(now)
                delivered.append(user)
        if delivered or valid.parties or valid.tags:
            kept = _Recipients(delivered, valid.parties, valid.tags)
            self._delivered.append(_replace(record, msgid, kept))
        for reason, users in (
            ("member_minute_limit", over_minute),
            ("member_hour_limit", over_hour),
        ):
            if users:
                self._dropped.append(_replace(record, msgid, _Recipients(users), reason=reason))

    async def _webhook_send(self, request: Request) -> Response:
        early = await self._begin(WEBHOOK_SEND, request)
        if early is not None:
            return early
        key = request.query_params.get("key", "")
        try:
            if key not in self.robot_keys:
                raise _Reject(93000, "invalid webhook url")
            with self._lock:
                disabled = key in self._disabled_robots
            if disabled:
                raise _Reject(93004, "robot is disabled")
            body = self._parse_message(await request.body())
            record = _robot_message(body, key, self._wall_clock())
            self.media.check_robot_media(key, record)
            with self._lock:
                now = self._clock()
                window = self._robot_sends.setdefault(key, deque())
                while window and now - window[0] >= 60:
                    window.popleft()
                if len(window) >= ROBOT_PER_MINUTE:
                    raise _Reject(45009, "api freq out of limit")
                window.append(now)
                self._delivered.append(record)
        except _Reject as reject:
            return _answer(reject.errcode, reject.errmsg)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    # ---- inspection and control over HTTP -----------------------------

    async def _http_messages(self, request: Request) -> Response:
        endpoint = request.query_params.get("endpoint")
        return JSONResponse([m.to_json() for m in self.messages(endpoint)])

    async def _http_dropped(self, request: Request) -> Response:
        return JSONResponse([m.to_json() for m in self.dropped()])

    async def _http_uploads(self, request: Request) -> Response:
        return JSONResponse([u.to_json() for u in self.uploads()])

    async def _http_expire_media(self, request: Request) -> Response:
        self.expire_media()
        return JSONResponse({"ok": True})

    async def _http_card_updates(self, request: Request) -> Response:
        return JSONResponse([u.to_json() for u in self.card_updates()])

    async def _http_response_codes(self, request: Request) -> Response:
        """POST ``{"task_id", "agent_id"?}``: mint a callback response_code (``new_response_code_for``)."""
        try:
            data = json.loads(await request.body())
            agent_id = data.get("agent_id")
            code = self.new_response_code_for(
                str(data["task_id"]), agent_id=None if agent_id is None else int(agent_id)
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "response_code": code})

    async def _http_contacts(self, request: Request) -> Response:
        """POST ``{"user_departments"?: {user: [ids]}, "tag_members"?: {tag: {"users": [], "parties": []}},
        "contact_errcode"?: 60011}``: what ``user/get`` and ``tag/get`` answer (``set_contacts``)."""
        try:
            data = json.loads(await request.body())
            departments = data.get("user_departments")
            tags = data.get("tag_members")
            errcode = data.get("contact_errcode")
            self.set_contacts(
                user_departments=None
                if departments is None
                else {str(u): [int(d) for d in ids] for u, ids in departments.items()},
                tag_members=None
                if tags is None
                else {
                    str(t): ([str(u) for u in m.get("users", [])], [int(p) for p in m.get("parties", [])])
                    for t, m in tags.items()
                },
                contact_errcode=None if errcode is None else int(errcode),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _http_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _http_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def _http_expire_tokens(self, request: Request) -> Response:
        self.expire_tokens()
        return JSONResponse({"ok": True})

    async def _http_faults(self, request: Request) -> Response:
        """POST ``{"endpoint", "errcode"?, "errmsg"?, "status"?, "delay"?, "times"? | "probability"?}``;
        DELETE clears every fault."""
        if request.method == "DELETE":
            self.clear_faults()
            return JSONResponse({"ok": True})
        try:
            data = json.loads(await request.body())
            endpoint = str(data["endpoint"])
            fault = Fault.from_json(data)
            if "probability" in data:
                self.set_fault_rate(endpoint, fault, float(data["probability"]))
            else:
                self.add_fault(endpoint, fault, int(data.get("times", 1)))
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})


# ---- request parsing (pure) -------------------------------------------


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(40058, "invalid Request Parameter, body is not UTF-8") from None
    if _UNICODE_ESCAPE.search(text):
        raise _Reject(
            40033,
            "invalid charset. please check your request, if include \\uxxxx will create fail!",
        )
    try:
        body = json.loads(text)
    except ValueError:
        raise _Reject(40058, "invalid Request Parameter, body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Reject(40058, "invalid Request Parameter, body must be a JSON object")
    return body


def _agent_id(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _app_content(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """(msgtype, content) of an app message; content only for text/markdown."""
    msgtype = body.get("msgtype")
    if not isinstance(msgtype, str) or msgtype not in APP_MSGTYPES:
        raise _Reject(40008, "invalid message type")
    section = body.get(msgtype)
    if msgtype not in ("text", "markdown"):
        if not isinstance(section, dict):
            raise _Reject(40058, f"invalid Request Parameter, {msgtype} is missing")
        _refuse(app_section_refusal(msgtype, section))
        return msgtype, None
    content = section.get("content") if isinstance(section, dict) else None
    if content is not None and not isinstance(content, str):
        raise _Reject(40058, f"invalid Request Parameter, {msgtype}.content must be a string")
    if not content:
        if msgtype == "text":
            raise _Reject(44004, "empty content")
        raise _Reject(40058, "invalid Request Parameter, markdown.content is empty")
    size = len(content.encode("utf-8"))
    if size > APP_CONTENT_LIMIT:
        if msgtype == "text":
            raise _Reject(45002, f"content size out of limit: {size} > {APP_CONTENT_LIMIT}")
        raise _Reject(
            40058,
            f"markdown.content exceed max length {APP_CONTENT_LIMIT}. invalid Request Parameter",
        )
    return msgtype, content


def _check_card(card: Mapping[str, Any], *, sent: bool) -> _CardCheck:
    """Validate a template card as message/send does (``sent``) or as a replacement card.

    The errcodes are those of the WeCom errcode table for template cards
    (42033 title, 42038 button text, 42039 button key); task_id problems and
    counts have no specific errcode there and get the generic 40058.
    """
    card_type = card.get("card_type")
    if not isinstance(card_type, str) or card_type not in CARD_TYPES:
        raise _Reject(42031, "Template_Card.CardType invalid")
    interactive = card_type in INTERACTION_CARD_TYPES
    task_id = card.get("task_id", "")
    if not isinstance(task_id, str):
        raise _Reject(40058, "invalid Request Parameter, task_id must be a string")
    if not task_id and sent and (interactive or "action_menu" in card):
        raise _Reject(40058, f"invalid Request Parameter, task_id is required for {card_type}")
    if task_id and (not _TASK_ID.fullmatch(task_id) or len(task_id.encode("utf-8")) > TASK_ID_LIMIT):
        raise _Reject(40058, "invalid Request Parameter, task_id must be at most 128 bytes of [A-Za-z0-9_-@]")
    if card_type == "button_interaction":
        _check_title(card)
        _check_buttons(card.get("button_list"))
    if card_type in NOTICE_CARD_TYPES:
        _refuse(notice_card_refusal(card, robot=False))
    return _CardCheck(task_id, interactive)


def _refuse(refusal: tuple[int, str] | None) -> None:
    if refusal is not None:
        raise _Reject(*refusal)


def _check_title(card: Mapping[str, Any]) -> None:
    main_title = card.get("main_title")
    title = main_title.get("title") if isinstance(main_title, dict) else None
    sub_title = card.get("sub_title_text")
    if not (isinstance(title, str) and title) and not (isinstance(sub_title, str) and sub_title):
        raise _Reject(42033, "Template_Card.main_title.title or sub_title_text is required")


def _check_buttons(buttons: object) -> None:
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= BUTTON_LIMIT:
        raise _Reject(40058, f"invalid Request Parameter, button_list must hold 1-{BUTTON_LIMIT} buttons")
    keys: set[str] = set()
    for button in buttons:
        if not isinstance(button, dict):
            raise _Reject(40058, "invalid Request Parameter, button_list items must be objects")
        text = button.get("text")
        if not isinstance(text, str) or not text:
            raise _Reject(42038, "Template_Card.button_list.text missing or invalid")
        button_type = button.get("type", 0)
        if button_type not in (0, 1) or isinstance(button_type, bool):
            raise _Reject(40058, "invalid Request Parameter, button_list.type must be 0 or 1")
        if button_type == 1:
            url = button.get("url")
            if not isinstance(url, str) or not url:
                raise _Reject(42028, "Template_Card.button_list.url missing")
            continue
        key = button.get("key")
        if not isinstance(key, str) or not key or len(key.encode("utf-8")) > BUTTON_KEY_LIMIT:
            raise _Reject(42039, "Template_Card.button_list.key missing or invalid")
        if key in keys:
            raise _Reject(42039, f"Template_Card.button_list.key {key} duplicated")
        keys.add(key)


def _card_replacement(body: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any] | None]:
    """(replace_name, template_card) of an update: exactly one of ``button`` and ``template_card``."""
    button, card = body.get("button"), body.get("template_card")
    if (button is None) == (card is None):
        raise _Reject(40058, "invalid Request Parameter, give either button or template_card")
    if button is not None:
        name = button.get("replace_name") if isinstance(button, dict) else None
        if not isinstance(name, str) or not name:
            raise _Reject(40058, "invalid Request Parameter, button.replace_name is missing")
        return name, None
    if not isinstance(card, dict):
        raise _Reject(40058, "invalid Request Parameter, template_card must be an object")
    _check_card(card, sent=False)
    return None, card


def _id_list(body: Mapping[str, Any], key: str, limit: int) -> tuple[str, ...]:
    """A list of ids (strings or numbers) as update_template_card takes them."""
    value = body.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        raise _Reject(40058, f"invalid Request Parameter, {key} must be a list of ids")
    if len(value) > limit:
        raise _Reject(40058, f"invalid Request Parameter, {key} exceeds {limit} ids")
    return tuple(str(v) for v in value)


def _ids(body: Mapping[str, Any], key: str, limit: int) -> list[str]:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise _Reject(40058, f"invalid Request Parameter, {key} must be a string")
    ids = [part for part in value.split("|") if part]
    if len(ids) > limit:
        raise _Reject(40058, f"invalid Request Parameter, {key} exceeds {limit} ids")
    return ids


def _parse_multipart(content_type: str, body: bytes) -> dict[str, _Part]:
    """The parts of a multipart/form-data body by name (the first of each name).

    Anything that is not such a body has no ``media`` and gets 44001, as an
    empty upload does.
    """
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise _Reject(44001, "empty media data, the body must be multipart/form-data")
    parts: dict[str, _Part] = {}
    sections = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    for section in sections[1:]:
        if section.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = section.partition(b"\r\n\r\n")
        if not sep:
            raise _Reject(40058, "invalid Request Parameter, malformed multipart body")
        part_headers = email.message.Message()
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                part_headers[name.strip()] = value.strip()
        field_name = part_headers.get_param("name", header="content-disposition")
        if isinstance(field_name, str) and field_name not in parts:
            filename = part_headers.get_filename()
            parts[field_name] = _Part(filename, part_headers.get_content_type(), data)
    return parts


def _check_media(media_type: str, part: _Part) -> None:
    size = len(part.data)
    limit, errcode = MEDIA_LIMITS[media_type]
    if size < MEDIA_MIN_BYTES:
        raise _Reject(40006, f"invalid file size: {size} bytes, must be more than 5")
    if size > limit:
        raise _Reject(errcode, f"invalid {media_type} size: {size} > {limit} bytes")
    if media_type == "image":
        if not (part.filename or "").lower().endswith(IMAGE_EXTENSIONS):
            raise _Reject(40005, "invalid file type, an image must be named .jpg or .png")
        if not part.data.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
            raise _Reject(40005, "invalid file type, an image must be JPG or PNG")
    if media_type == "voice" and not part.data.startswith(b"#!AMR"):
        raise _Reject(40005, "invalid file type, a voice must be AMR")
    if media_type == "video" and part.data[4:8] != b"ftyp":
        raise _Reject(40005, "invalid file type, a video must be MP4")


def _robot_image(section: Mapping[str, Any]) -> str:
    """Check a robot image (base64 + md5 of the raw bytes); returns the bytes' sha256."""
    encoded, md5 = section.get("base64"), section.get("md5")
    if not isinstance(encoded, str) or not encoded or not isinstance(md5, str) or not md5:
        raise _Reject(40058, "invalid Request Parameter, image.base64 and image.md5 are required")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _Reject(40058, "invalid Request Parameter, image.base64 is not valid base64") from None
    if hashlib.md5(raw, usedforsecurity=False).hexdigest() != md5.lower():
        raise _Reject(40058, "invalid Request Parameter, image.md5 does not match the image")
    if len(raw) > ROBOT_IMAGE_LIMIT:
        raise _Reject(40058, f"invalid Request Parameter, image exceed max size {ROBOT_IMAGE_LIMIT}")
    if not raw.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        raise _Reject(40058, "invalid Request Parameter, image must be JPG or PNG")
    return hashlib.sha256(raw).hexdigest()


def _robot_message(body: Mapping[str, Any], key: str, timestamp: float) -> Message:
    msgtype = body.get("msgtype")
    if not isinstance(msgtype, str) or msgtype not in ROBOT_MSGTYPES:
        raise _Reject(40008, "invalid message type")
    section = body.get(msgtype)
    if not isinstance(section, dict):
        raise _Reject(40058, f"invalid Request Parameter, {msgtype} is missing")
    _refuse(robot_section_refusal(msgtype, section))
    content: str | None = None
    mentioned: tuple[str, ...] = ()
    mobiles: tuple[str, ...] = ()
    if msgtype in ("text", "markdown", "markdown_v2"):
        content = section.get("content")
        if not isinstance(content, str) or not content:
            raise _Reject(44004, "empty content")
        limit = ROBOT_TEXT_LIMIT if msgtype == "text" else ROBOT_MARKDOWN_LIMIT
        if len(content.encode("utf-8")) > limit:
            raise _Reject(40058, f"{msgtype}.content exceed max length {limit}. invalid Request Parameter")
    if msgtype == "text":
        mentioned = _string_list(section, "mentioned_list")
        mobiles = _string_list(section, "mentioned_mobile_list")
    image_sha256 = _robot_image(section) if msgtype == "image" else ""
    return Message(
        endpoint=WEBHOOK_SEND,
        msgtype=msgtype,
        content=content,
        body=body,
        timestamp=timestamp,
        robot_key=key,
        mentioned=mentioned,
        mentioned_mobiles=mobiles,
        image_sha256=image_sha256,
    )


def _string_list(section: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Reject(40058, f"invalid Request Parameter, {key} must be a list of strings")
    return tuple(value)


def _duplicate_interval(body: Mapping[str, Any]) -> float:
    value = body.get("duplicate_check_interval", DEFAULT_DUPLICATE_INTERVAL)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return DEFAULT_DUPLICATE_INTERVAL
    return min(float(value), MAX_DUPLICATE_INTERVAL)


def _canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _replace(record: Message, msgid: str, recipients: _Recipients, *, reason: str = "") -> Message:
    return replace(
        record,
        msgid=msgid,
        to_user=tuple(recipients.users),
        to_party=tuple(recipients.parties),
        to_tag=tuple(recipients.tags),
        reason=reason,
    )


def _new_msgid() -> str:
    return secrets.token_urlsafe(24)


def _folded(ids: Iterable[str] | None) -> frozenset[str] | None:
    # WeCom userids are case-insensitive (and reported back lower-cased).
    return None if ids is None else frozenset(i.casefold() for i in ids)


def _answer(errcode: int, errmsg: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg})


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


# ---- command line ----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alertbridge.testing.fake_wecom",
        description="A fake WeCom API for trials and tests (never for production).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--corp-id", action="append", default=[], help="one per app (repeat)")
    parser.add_argument("--secret", action="append", default=[], help="one per app, in --corp-id order")
    parser.add_argument("--agent-id", action="append", type=int, default=[], help="one per app")
    parser.add_argument("--robot-key", action="append", default=[], help="a valid robot key (repeat)")
    parser.add_argument(
        "--user", action="append", default=None, help="a known userid (repeat); default: all exist"
    )
    parser.add_argument(
        "--token-lifetime", type=int, default=7200, help="expires_in of issued tokens, seconds"
    )
    return parser


def apps_from_args(args: argparse.Namespace) -> list[FakeApp]:
    corp_ids: Sequence[str] = args.corp_id
    if not (len(corp_ids) == len(args.secret) == len(args.agent_id)):
        raise SystemExit("give --corp-id, --secret and --agent-id once per app, in the same order")
    if not corp_ids:
        return [FakeApp()]
    return [FakeApp(c, s, a) for c, s, a in zip(corp_ids, args.secret, args.agent_id, strict=True)]


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn  # only the command line needs it directly

    args = build_parser().parse_args(argv)
    apps = apps_from_args(args)
    robot_keys = args.robot_key or [DEFAULT_ROBOT_KEY]
    fake = FakeWeCom(apps, robot_keys, users=args.user, token_lifetime=args.token_lifetime)
    for app in apps:
        print(f"fake WeCom app: corp_id={app.corp_id} agent_id={app.agent_id} secret={app.secret}")
    for key in robot_keys:
        print(f"fake WeCom robot key: {key}")
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
