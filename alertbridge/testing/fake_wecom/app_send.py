"""App messages (``message/send``): content and card checks, recipients,
duplicate check, and the per-member rate limits whose excess is silently
dropped, as WeCom does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertbridge.testing.fake_wecom.cards import CardUpdates, _check_card
from alertbridge.testing.fake_wecom.media_upload import MediaUploads
from alertbridge.testing.fake_wecom.parsing import (
    _agent_id,
    _answer,
    _canonical,
    _duplicate_interval,
    _ids,
    _new_msgid,
    _refuse,
    _replace,
)
from alertbridge.testing.fake_wecom.records import FakeApp, Message, _Recipients, _Reject
from alertbridge.testing.fake_wecom.spec import (
    APP_CONTENT_LIMIT,
    APP_MEDIA_MSGTYPES,
    APP_MSGTYPES,
    MEMBER_PER_HOUR,
    MEMBER_PER_MINUTE,
    MESSAGE_SEND,
)
from alertbridge.testing.fake_wecom_msgtypes import app_section_refusal


class AppMessages(MediaUploads, CardUpdates):
    """``message/send`` for the app a token belongs to."""

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
