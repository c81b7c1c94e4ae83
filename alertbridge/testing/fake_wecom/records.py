"""What the fake hands out and records: apps, tokens, delivered and dropped
messages, card updates, uploads, and the clock tests drive.

These are plain values the endpoint modules share; ``_Reject`` ends a
request with an errcode answer wherever a check fails.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from alertbridge.testing.fake_wecom.spec import DEFAULT_AGENT_ID, DEFAULT_CORP_ID, DEFAULT_SECRET


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
