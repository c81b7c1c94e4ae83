"""Template cards: the checks a card passes on ``message/send`` or as a
replacement, and ``message/update_template_card`` with its one-use
response codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertbridge.testing.fake_wecom.parsing import _agent_id, _answer, _id_list, _parse_body, _refuse
from alertbridge.testing.fake_wecom.records import CardUpdate, FakeApp, _CardCheck, _Reject
from alertbridge.testing.fake_wecom.spec import (
    _TASK_ID,
    BUTTON_KEY_LIMIT,
    BUTTON_LIMIT,
    CARD_TYPES,
    INTERACTION_CARD_TYPES,
    TASK_ID_LIMIT,
    UPDATE_TEMPLATE_CARD,
)
from alertbridge.testing.fake_wecom.state import FakeState
from alertbridge.testing.fake_wecom_msgtypes import NOTICE_CARD_TYPES, notice_card_refusal


class CardUpdates(FakeState):
    """``message/update_template_card``: a response_code of this app, unused and young (60140)."""

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
