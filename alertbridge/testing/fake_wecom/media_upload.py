"""``media/upload``: the multipart body, the per-type size and format checks,
and the media ids app media messages must name.
"""

from __future__ import annotations

import email.message
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertbridge.testing.fake_wecom.parsing import _answer
from alertbridge.testing.fake_wecom.records import FakeApp, Upload, _Part, _Reject
from alertbridge.testing.fake_wecom.spec import (
    _JPEG_MAGIC,
    _PNG_MAGIC,
    IMAGE_EXTENSIONS,
    MEDIA_LIMITS,
    MEDIA_MIN_BYTES,
    MEDIA_UPLOAD,
)
from alertbridge.testing.fake_wecom.state import FakeState


class MediaUploads(FakeState):
    """Accepts uploads and resolves the media ids messages name (40007)."""

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
