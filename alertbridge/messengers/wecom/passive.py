"""Passive replies: what a callback's own HTTP response says back (docs/wecom-api.md §3.4).

Answering in the response needs no access token and no send quota, and works
when WeCom refuses our sends (60020, an untrusted IP), so everything the
callback can answer within WeCom's 5-second window is answered this way.

An ``Answer`` is what alertbridge has to say to one callback: a text for the
member and, for a card click, a new label for the card's buttons. This module renders
it as the plaintext XML that ``CallbackCrypto.seal_reply`` encrypts; the
plaintext (not the sealed body, which carries a fresh random prefix) is what
the state store keeps for WeCom's retries.
"""

from __future__ import annotations

from dataclasses import dataclass

# WeCom truncates a passive text reply's Content beyond 2048 bytes (§3.4); cut
# it ourselves at a character boundary rather than let a character be split.
MAX_TEXT_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Answer:
    """What to say to one callback: ``text`` for the member; for a card click
    that succeeded also ``button_label``, the label replacing the clicked card's
    buttons (the text is then what is sent if the card cannot be updated).
    Neither: nothing to say."""

    text: str | None = None
    button_label: str | None = None


NOTHING = Answer()


def text_reply(to_user: str, corp_id: str, content: str, create_time: int) -> str:
    """The plaintext of a passive text reply to ``to_user``."""
    clipped = content.encode("utf-8")[:MAX_TEXT_BYTES].decode("utf-8", "ignore")
    return _xml(to_user, corp_id, create_time, "text", f"<Content>{_cdata(clipped)}</Content>")


def button_reply(to_user: str, corp_id: str, label: str, create_time: int) -> str:
    """The plaintext of an ``update_button`` reply: the clicked card's buttons
    become one greyed-out ``label``, for the clicking member only."""
    body = f"<Button><ReplaceName>{_cdata(label)}</ReplaceName></Button>"
    return _xml(to_user, corp_id, create_time, "update_button", body)


def _xml(to_user: str, corp_id: str, create_time: int, msg_type: str, body: str) -> str:
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(corp_id)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        f"<MsgType>{_cdata(msg_type)}</MsgType>{body}</xml>"
    )


def _cdata(value: str) -> str:
    # "]]>" cannot appear inside CDATA: end the section and start a new one around it.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
