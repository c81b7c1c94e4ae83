"""Group robots' ``webhook/send``: keys, disabled robots (93004), message
checks and the 20-a-minute limit (45009).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import deque
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertbridge.testing.fake_wecom.parsing import _answer, _refuse, _string_list
from alertbridge.testing.fake_wecom.records import Message, _Reject
from alertbridge.testing.fake_wecom.spec import (
    _JPEG_MAGIC,
    _PNG_MAGIC,
    ROBOT_IMAGE_LIMIT,
    ROBOT_MARKDOWN_LIMIT,
    ROBOT_MSGTYPES,
    ROBOT_PER_MINUTE,
    ROBOT_TEXT_LIMIT,
    WEBHOOK_SEND,
)
from alertbridge.testing.fake_wecom.state import FakeState
from alertbridge.testing.fake_wecom_msgtypes import robot_section_refusal


class RobotWebhook(FakeState):
    """Accepts robot messages for known, enabled keys within the per-robot rate."""

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
