"""Read a decrypted WeCom callback message into a typed value.

``CallbackCrypto.open_message`` returns the inner XML; this module turns it
into one of four frozen dataclasses (docs/wecom-api.md §3):

- ``TextMessage``: a member typed text in the app's conversation (commands);
- ``EventMessage``: menu clicks, entering the app, template-card button
  clicks (``template_card_event``), card menu clicks, (un)subscribe …;
- ``MediaMessage``: an image, voice, video or file a member sent (a
  screenshot replied to an alert), named by its ``MediaId`` for ``media/get``;
- ``OtherMessage``: any other ``MsgType`` (location, link …), kept only so
  the caller can acknowledge and ignore it.

Only the fields alertbridge acts on are read; anything else in the XML
(``SelectedItems`` of vote cards, ``PicUrl`` …) is ignored, so new WeCom
fields never break parsing. ``MsgType`` and ``Event`` are lower-cased: the
docs use lower case but SDKs and some events (``LOCATION``) do not.

``dedup_key`` gives the key under which a retried delivery (WeCom re-sends
after 5 s without an answer, up to three more times, §3.3) is recognised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from alertbridge.messengers.wecom.callback_errors import MalformedMessage
from alertbridge.messengers.wecom.callback_xml import xml_fields

_DIGITS = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class TextMessage:
    """``MsgType=text``: what a member typed in the app's conversation."""

    from_user: str
    create_time: int
    msg_id: str
    agent_id: int | None
    content: str


@dataclass(frozen=True, slots=True)
class EventMessage:
    """``MsgType=event``. ``event`` is lower-cased; absent optional fields are "".

    For ``template_card_event``/``template_card_menu_event``: ``event_key`` is
    the clicked button's ``key``, ``task_id`` the card's ``task_id``,
    ``card_type`` e.g. ``button_interaction``, and ``response_code`` a fresh
    one-use code for ``message/update_template_card``.
    """

    from_user: str
    create_time: int
    agent_id: int | None
    event: str
    event_key: str = ""
    task_id: str = ""
    card_type: str = ""
    response_code: str = ""


@dataclass(frozen=True, slots=True)
class MediaMessage:
    """``MsgType`` image / voice / video / file: ``media_id`` fetches it (3 days).

    ``filename`` is the file message's ``FileName`` ("" for the other types,
    which WeCom names nowhere); ``format`` a voice's ``Format`` (``amr``).
    """

    from_user: str
    create_time: int
    msg_id: str
    agent_id: int | None
    kind: str
    media_id: str
    filename: str = ""
    format: str = ""


# The inbound MsgTypes that carry a MediaId alertbridge keeps.
MEDIA_MSG_TYPES = frozenset({"image", "voice", "video", "file"})


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A message type alertbridge does not act on (location, link …)."""

    from_user: str
    create_time: int
    msg_type: str
    msg_id: str = ""
    agent_id: int | None = None


InboundMessage = TextMessage | EventMessage | MediaMessage | OtherMessage


def parse_inbound(xml: bytes) -> InboundMessage:
    """Parse the decrypted inner XML of a callback.

    Raises:
        MalformedMessage: not well-formed, has a DTD/entities, the root is not
            ``<xml>``, or a required field is missing or not a number.
    """
    root = xml_fields(xml, "message")
    from_user = _required(root, "FromUserName")
    create_time = _number(root, "CreateTime")
    msg_type = _required(root, "MsgType").lower()
    agent_id = _agent_id(root)
    if msg_type == "text":
        msg_id = _text(root, "MsgId").strip()
        if not _DIGITS.fullmatch(msg_id):
            raise MalformedMessage("text message has no numeric <MsgId>")
        return TextMessage(from_user, create_time, msg_id, agent_id, _text(root, "Content"))
    if msg_type == "event":
        return EventMessage(
            from_user,
            create_time,
            agent_id,
            _required(root, "Event").lower(),
            event_key=_text(root, "EventKey"),
            task_id=_text(root, "TaskId"),
            card_type=_text(root, "CardType"),
            response_code=_text(root, "ResponseCode"),
        )
    msg_id = _text(root, "MsgId").strip()
    if msg_type in MEDIA_MSG_TYPES:
        return MediaMessage(
            from_user,
            create_time,
            msg_id,
            agent_id,
            msg_type,
            _required(root, "MediaId"),
            filename=_text(root, "FileName").strip(),
            format=_text(root, "Format").strip().lower(),
        )
    return OtherMessage(from_user, create_time, msg_type, msg_id, agent_id)


def dedup_key(message: InboundMessage) -> str:
    """The identity of a delivery, equal across WeCom's retries of it.

    Messages carry a unique ``MsgId``. Events have none, so the key is
    (FromUserName, CreateTime, Event, EventKey, TaskId): ``EventKey`` alone
    repeats across cards sharing button keys and ``TaskId`` alone across the
    buttons of one card; ``ResponseCode`` is left out because nothing
    documents it to be the same in a retry. Two distinct clicks by one member
    on the same button within one second collapse into one, which for
    ack/silence buttons is what we want anyway.
    """
    if isinstance(message, EventMessage):
        parts: list[object] = [
            message.from_user,
            message.create_time,
            message.event,
            message.event_key,
            message.task_id,
        ]
        return "event:" + json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    if isinstance(message, MediaMessage | OtherMessage) and not message.msg_id:
        # A message type without MsgId (none is documented, but be safe).
        kind = message.kind if isinstance(message, MediaMessage) else message.msg_type
        parts = [message.from_user, message.create_time, kind]
        return "msg:" + json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return f"msg:{message.msg_id}"


def _text(root: Mapping[str, str], tag: str) -> str:
    """The text of the first ``tag`` child, "" if absent or empty (CDATA is plain text here)."""
    return root.get(tag, "")


def _required(root: Mapping[str, str], tag: str) -> str:
    value = _text(root, tag).strip()
    if not value:
        raise MalformedMessage(f"message has no <{tag}>")
    return value


def _number(root: Mapping[str, str], tag: str) -> int:
    value = _text(root, tag).strip()
    if not _DIGITS.fullmatch(value):
        raise MalformedMessage(f"message <{tag}> is missing or not a number")
    return int(value)


def _agent_id(root: Mapping[str, str]) -> int | None:
    value = _text(root, "AgentID").strip()
    if not value:
        return None
    if not _DIGITS.fullmatch(value):
        raise MalformedMessage("message <AgentID> is not a number")
    return int(value)
