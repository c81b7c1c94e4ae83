"""Text cards and news: a group rendered by its template, dressed as WeCom's structured messages.

The receiver's template renders only the *description* (``default.zh.textcard.j2``,
``default.zh.news.j2``), against WeCom's 512-byte description limit
(``limits.DESCRIPTION_BYTES``). So the renderer splits a big group between
alerts exactly as it splits a text message — every alert lands in exactly one
part, an alert too big alone is cut with a marker — and each part is then dressed:

- ``textcard``: one card per part. Its title (``【告警】name #27 (2/3)``), link and
  button text are built here; a group split into three parts is three cards.
- ``news``: one article per part, at most ``NEWS_ARTICLES`` (8) to a message
  (WeCom answers 45008 beyond), so a group of 20 parts is three messages; the
  first article of each message carries the group's panel image as ``picurl``.

Titles are cut to 128 bytes on a UTF-8 character boundary with an ellipsis;
descriptions already fit. The link is the group's (``card.group_link``: the
runbook, else the graph or panel, else the Alertmanager/Grafana external URL);
a group with none cannot be a card or an article, and goes as the receiver's
plain fallback (``dress`` answers None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alertbridge.message import RenderedMessage
from alertbridge.messengers.wecom.card import group_image, group_link, mark_sub_title
from alertbridge.messengers.wecom.limits import BTNTXT_CHARS, DESCRIPTION_BYTES, NEWS_ARTICLES, TITLE_BYTES
from alertbridge.model import AlertGroup
from alertbridge.render.filters import group_title
from alertbridge.render.split import truncate_utf8

ELLIPSIS = "…"
# A news message's summary (logs, previews) joins its articles' descriptions.
NEWS_SUMMARY_LIMIT = NEWS_ARTICLES * (DESCRIPTION_BYTES + 2)

_WORDS = {
    "zh": {"firing": "告警", "resolved": "已恢复", "button": "详情"},
    "en": {"firing": "FIRING", "resolved": "RESOLVED", "button": "More"},
}


def clip_bytes(text: str, max_bytes: int) -> str:
    """``text`` on one line, cut to ``max_bytes`` UTF-8 bytes on a character
    boundary with an ellipsis when it is longer (never mid-character)."""
    return truncate_utf8(" ".join(text.split()), max_bytes, ELLIPSIS)


def part_title(group: AlertGroup, *, ref: int, language: str, part: int, parts: int) -> str:
    """``【告警】name #27 (2/3)`` within ``TITLE_BYTES``: the name is what gives way,
    so the status, reference and part number always show."""
    words = _WORDS.get(language, _WORDS["en"])
    status = words["firing"] if group.firing else words["resolved"]
    head = f"【{status}】"
    tail = (f" #{ref}" if ref else "") + (f" ({part}/{parts})" if parts > 1 else "")
    room = TITLE_BYTES - len((head + tail).encode("utf-8"))
    return head + clip_bytes(group_title(group), room) + tail


def dress(
    messages: Sequence[RenderedMessage], group: AlertGroup, *, ref: int, language: str
) -> list[RenderedMessage] | None:
    """The rendered description parts of ``group`` as textcard or news messages
    (by their msgtype); None when the group has no link to give them."""
    url = group_link(group)
    if not url or not messages:
        return None
    if messages[0].msgtype == "textcard":
        return [_textcard(message, group, url, ref=ref, language=language) for message in messages]
    return _news(messages, group, url, ref=ref, language=language)


def _textcard(
    message: RenderedMessage, group: AlertGroup, url: str, *, ref: int, language: str
) -> RenderedMessage:
    words = _WORDS.get(language, _WORDS["en"])
    card = {
        "title": part_title(group, ref=ref, language=language, part=message.part, parts=message.parts),
        "description": message.content,
        "url": url,
        "btntxt": words["button"][:BTNTXT_CHARS],
    }
    return RenderedMessage(
        msgtype="textcard",
        content=message.content,
        limit=message.limit,
        part=message.part,
        parts=message.parts,
        card=card,
    )


def _news(
    messages: Sequence[RenderedMessage], group: AlertGroup, url: str, *, ref: int, language: str
) -> list[RenderedMessage]:
    image = group_image(group)
    batches = [messages[start : start + NEWS_ARTICLES] for start in range(0, len(messages), NEWS_ARTICLES)]
    dressed: list[RenderedMessage] = []
    for number, batch in enumerate(batches, 1):
        articles: list[dict[str, Any]] = []
        for message in batch:
            title = part_title(group, ref=ref, language=language, part=message.part, parts=message.parts)
            article: dict[str, Any] = {"title": title, "description": message.content, "url": url}
            if image and not articles:
                article["picurl"] = image
            articles.append(article)
        dressed.append(
            RenderedMessage(
                msgtype="news",
                content="\n\n".join(message.content for message in batch),
                limit=NEWS_SUMMARY_LIMIT,
                part=number,
                parts=len(batches),
                card={"articles": articles},
            )
        )
    return dressed


def mark_card(msgtype: str, card: Mapping[str, Any], mark: str) -> dict[str, Any]:
    """A structured message's section with ``mark`` (a re-send's "(repeat)")
    where it shows: a template card's sub-title, a text card's description,
    a news message's first article's description (each within its limit)."""
    if msgtype == "template_card":
        return mark_sub_title(card, mark)
    marked = dict(card)
    if msgtype == "textcard":
        marked["description"] = _marked_description(card, mark)
    elif msgtype == "news":
        first, *rest = card["articles"]
        marked["articles"] = [{**first, "description": _marked_description(first, mark)}, *rest]
    return marked


def _marked_description(section: Mapping[str, Any], mark: str) -> str:
    room = DESCRIPTION_BYTES - len(mark.encode("utf-8"))
    return mark + truncate_utf8(str(section.get("description", "")), room, ELLIPSIS)
