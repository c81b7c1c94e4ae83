"""The fake WeCom's media endpoints beyond ``media/upload`` (which ``fake_wecom`` serves).

- ``media/get`` (docs/wecom-api.md §7): fetch media a member sent to the app
  (an inbound image, voice or file message names it by ``MediaId``). Tests
  put such media in with ``FakeMedia.receive`` and read its id; the endpoint
  checks the access token as every app endpoint does, answers 40007 for an
  unknown, foreign-corp or expired (``media_lifetime``, 3 days) id, and
  otherwise the raw bytes with their ``Content-Type`` and a
  ``Content-Disposition`` naming the file, as WeCom does. Over HTTP,
  ``POST /_fake/inbound-media?type=&filename=`` with the file as its body
  does what ``receive`` does and answers ``{"media_id": …}``.
- ``webhook/upload_media`` (§5): a robot's upload of a ``file`` or ``voice``
  (40004 for any other type) under the robot's key (93000 for an unknown
  one), with the same size rules as ``media/upload`` (44001 empty, 40006
  five bytes or fewer, or over 2 MB for voice and 20 MB for file) and AMR
  bytes for voice (40005). That robot's ``file``/``voice`` messages must
  name such an upload, live (3 days), of their type (40007 otherwise).

``FakeWeCom`` builds one ``FakeMedia`` as ``fake.media`` and mounts its routes.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge.testing import fake_wecom as core

if TYPE_CHECKING:
    from alertbridge.testing.fake_wecom import FakeWeCom

ROBOT_UPLOAD_KINDS = ("file", "voice")


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """Media WeCom holds: a member's inbound file, or a robot's upload."""

    media_id: str
    corp_id: str  # "" for a robot's upload
    robot_key: str  # "" for inbound media
    type: str
    filename: str
    content_type: str
    data: bytes
    created_at: float  # on the fake's clock

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class FakeMedia:
    """``media/get`` and ``webhook/upload_media`` for one ``FakeWeCom``."""

    def __init__(self, fake: FakeWeCom) -> None:
        self._fake = fake
        self._lock = threading.Lock()
        self._media: dict[str, StoredMedia] = {}
        self.get_requests = 0

    def routes(self) -> list[Route]:
        return [
            Route("/cgi-bin/media/get", self._media_get, methods=["GET"]),
            Route("/cgi-bin/webhook/upload_media", self._robot_upload, methods=["POST"]),
            Route("/_fake/inbound-media", self._http_receive, methods=["POST"]),
        ]

    def receive(
        self,
        data: bytes,
        *,
        type: str = "image",
        filename: str = "screenshot.png",
        content_type: str = "image/png",
        corp_id: str | None = None,
    ) -> str:
        """Hold ``data`` as media a member sent to an app of ``corp_id`` (the first app's
        corp by default); returns the MediaId the inbound message would carry."""
        stored = StoredMedia(
            media_id=secrets.token_urlsafe(32),
            corp_id=corp_id if corp_id is not None else self._fake.apps[0].corp_id,
            robot_key="",
            type=type,
            filename=filename,
            content_type=content_type,
            data=data,
            created_at=self._fake._clock(),
        )
        with self._lock:
            self._media[stored.media_id] = stored
        return stored.media_id

    def check_robot_media(self, key: str, message: core.Message) -> None:
        """A robot ``file``/``voice`` message must name a live upload of that robot (40007)."""
        if message.msgtype not in ROBOT_UPLOAD_KINDS:
            return
        section = message.body.get(message.msgtype)
        media_id = section.get("media_id") if isinstance(section, dict) else None
        with self._lock:
            stored = self._media.get(media_id) if isinstance(media_id, str) else None
        if stored is None or stored.robot_key != key or stored.type != message.msgtype:
            raise core._Reject(40007, "invalid media_id")
        if self._fake._clock() - stored.created_at >= self._fake.media_lifetime:
            raise core._Reject(40007, "invalid media_id, media_id expired")

    def robot_uploads(self) -> list[StoredMedia]:
        """Accepted ``webhook/upload_media`` calls, oldest first."""
        with self._lock:
            return [m for m in self._media.values() if m.robot_key]

    def expire(self) -> None:
        """Expire every media id held here (``media/get`` answers 40007)."""
        with self._lock:
            for media_id, stored in self._media.items():
                self._media[media_id] = replace(stored, created_at=float("-inf"))

    async def _http_receive(self, request: Request) -> Response:
        """``receive`` over HTTP: the body is the file; ``type``, ``filename`` in the query."""
        params = request.query_params
        media_id = self.receive(
            await request.body(),
            type=params.get("type", "image"),
            filename=params.get("filename", "screenshot.png"),
            content_type=request.headers.get("content-type", "image/png"),
        )
        return JSONResponse({"media_id": media_id})

    async def _media_get(self, request: Request) -> Response:
        with self._lock:
            self.get_requests += 1
        try:
            app = self._fake._authorize(request.query_params.get("access_token", ""))
            with self._lock:
                stored = self._media.get(request.query_params.get("media_id", ""))
            if stored is None or stored.corp_id != app.corp_id:
                raise core._Reject(40007, "invalid media_id")
            if self._fake._clock() - stored.created_at >= self._fake.media_lifetime:
                raise core._Reject(40007, "invalid media_id, media_id expired")
        except core._Reject as reject:
            return core._answer(reject.errcode, reject.errmsg)
        disposition = f"attachment; filename*=UTF-8''{quote(stored.filename)}"
        return Response(
            stored.data, media_type=stored.content_type, headers={"Content-Disposition": disposition}
        )

    async def _robot_upload(self, request: Request) -> Response:
        key = request.query_params.get("key", "")
        try:
            if key not in self._fake.robot_keys:
                raise core._Reject(93000, "invalid webhook url")
            media_type = request.query_params.get("type", "")
            if media_type not in ROBOT_UPLOAD_KINDS:
                raise core._Reject(40004, "invalid media type")
            parts = core._parse_multipart(request.headers.get("content-type", ""), await request.body())
            part = parts.get("media")
            if part is None or not part.data:
                raise core._Reject(44001, "empty media data")
            core._check_media(media_type, part)
        except core._Reject as reject:
            return core._answer(reject.errcode, reject.errmsg)
        stored = StoredMedia(
            media_id=secrets.token_urlsafe(32),
            corp_id="",
            robot_key=key,
            type=media_type,
            filename=part.filename or "",
            content_type=part.content_type,
            data=part.data,
            created_at=self._fake._clock(),
        )
        with self._lock:
            self._media[stored.media_id] = stored
        return JSONResponse({"errcode": 0, "errmsg": "ok", "type": media_type, "media_id": stored.media_id})
