"""``FakeWeCom``: the parts assembled into one fake with its routes and server."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from alertbridge.testing.fake_wecom.app_send import AppMessages
from alertbridge.testing.fake_wecom.contacts import ContactRoutes
from alertbridge.testing.fake_wecom.inspection import HttpInspection
from alertbridge.testing.fake_wecom.parsing import _folded
from alertbridge.testing.fake_wecom.records import FakeApp, Upload, _Token
from alertbridge.testing.fake_wecom.robot import RobotWebhook
from alertbridge.testing.fake_wecom.spec import (
    DEFAULT_ROBOT_KEY,
    MEDIA_LIFETIME,
    RESPONSE_CODE_LIFETIME,
    Clock,
)
from alertbridge.testing.fake_wecom.tokens import TokenRoutes
from alertbridge.testing.server import ServerThread


class FakeWeCom(HttpInspection, AppMessages, RobotWebhook, ContactRoutes, TokenRoutes):
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

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve the fake on a real uvicorn server in a thread; yields its base URL."""
        with ServerThread(self.app, host, port) as server:
            yield server.base_url

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
