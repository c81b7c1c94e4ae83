"""Request parsing and answers shared by every endpoint (pure functions):
the UTF-8 JSON body rules (40033/40058), id lists, agent ids, errcode
answers and the records' recipient rewrite.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from starlette.responses import JSONResponse

from alertbridge.testing.fake_wecom.records import Message, _Recipients, _Reject
from alertbridge.testing.fake_wecom.spec import (
    _UNICODE_ESCAPE,
    DEFAULT_DUPLICATE_INTERVAL,
    MAX_DUPLICATE_INTERVAL,
)


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


def _refuse(refusal: tuple[int, str] | None) -> None:
    if refusal is not None:
        raise _Reject(*refusal)


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
