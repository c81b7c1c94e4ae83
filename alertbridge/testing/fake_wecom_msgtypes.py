"""The fake WeCom's checks of the structured message types: textcard, news and notice cards.

``fake_wecom`` calls these for the sections it does not check itself; each
answers the refusal WeCom gives — ``(errcode, errmsg)`` — or None when the
section is acceptable. Sources: docs/wecom-api.md §4.3 (app) and §5 (robot).

- textcard (apps): ``title`` ≤ 128 bytes, ``description`` ≤ 512 bytes and
  ``url`` ≤ 2048 bytes (an http(s) URL) are required, ``btntxt`` ≤ 4 characters;
- news (apps and robots): 1-8 ``articles`` (45008 beyond 8), each with a
  ``title`` ≤ 128 bytes and a ``url``, a ``description`` ≤ 512 bytes and a
  ``picurl`` ≤ 2048 bytes when present;
- ``text_notice`` / ``news_notice`` template cards: ``main_title.title`` or
  ``sub_title_text`` (42033), ``horizontal_content_list`` ≤ 6, ``jump_list`` ≤ 3,
  a ``card_action`` with its url (required on robots, docs §5), and for
  ``news_notice`` a ``card_image.url``.

WeCom cuts an over-long textcard/news description itself (mid-character);
the fake refuses it with 40058 instead, so a test sees any body alertbridge
let grow past a limit. A missing required field is 40058 too ("missing
required", docs §4.2): the doc names no field-specific errcode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

TITLE_BYTES: Final = 128
DESCRIPTION_BYTES: Final = 512
URL_BYTES: Final = 2048
BTNTXT_CHARS: Final = 4
MAX_ARTICLES: Final = 8
MAX_HORIZONTAL: Final = 6
MAX_JUMPS: Final = 3
NOTICE_CARD_TYPES: Final = frozenset({"text_notice", "news_notice"})

INVALID_PARAMETER: Final = 40058
TOO_MANY_ARTICLES: Final = 45008
CARD_TYPE_INVALID: Final = 42031
CARD_TITLE_MISSING: Final = 42033

Refusal = tuple[int, str]


def app_section_refusal(msgtype: str, section: Mapping[str, Any]) -> Refusal | None:
    """What WeCom answers an app message's ``msgtype`` section (``message/send``);
    None for an acceptable one or a type not checked here."""
    if msgtype == "textcard":
        return _textcard_refusal(section)
    if msgtype == "news":
        return _news_refusal(section)
    return None


def robot_section_refusal(msgtype: str, section: Mapping[str, Any]) -> Refusal | None:
    """What a group robot answers a ``msgtype`` section (``webhook/send``):
    news, and template cards of the notice types only."""
    if msgtype == "news":
        return _news_refusal(section)
    if msgtype == "template_card":
        if section.get("card_type") not in NOTICE_CARD_TYPES:
            return CARD_TYPE_INVALID, "Template_Card.CardType invalid"
        return notice_card_refusal(section, robot=True)
    return None


def notice_card_refusal(card: Mapping[str, Any], *, robot: bool) -> Refusal | None:
    """What WeCom answers a ``text_notice`` / ``news_notice`` template card."""
    main_title = card.get("main_title")
    title = main_title.get("title") if isinstance(main_title, dict) else None
    sub_title = card.get("sub_title_text")
    if not (isinstance(title, str) and title) and not (isinstance(sub_title, str) and sub_title):
        return CARD_TITLE_MISSING, "Template_Card.main_title.title or sub_title_text is required"
    for key, most in (("horizontal_content_list", MAX_HORIZONTAL), ("jump_list", MAX_JUMPS)):
        items = card.get(key, [])
        if not isinstance(items, list) or len(items) > most:
            return _invalid(f"{key} must hold at most {most} items")
    action = card.get("card_action")
    if action is None and robot:
        return _invalid("card_action is required")
    if action is not None:
        if not isinstance(action, dict):
            return _invalid("card_action must be an object")
        if action.get("type") == 1 and not _url_ok(action.get("url")):
            return _invalid("card_action.url is missing or invalid")
    if card.get("card_type") == "news_notice":
        image = card.get("card_image")
        if not isinstance(image, dict) or not _url_ok(image.get("url")):
            return _invalid("card_image.url is required for news_notice")
    return None


def _textcard_refusal(section: Mapping[str, Any]) -> Refusal | None:
    refusal = _titled_refusal("textcard", section, description_required=True)
    if refusal:
        return refusal
    btntxt = section.get("btntxt", "")
    if not isinstance(btntxt, str) or len(btntxt) > BTNTXT_CHARS:
        return _invalid(f"textcard.btntxt exceed max length {BTNTXT_CHARS}")
    return None


def _news_refusal(section: Mapping[str, Any]) -> Refusal | None:
    articles = section.get("articles")
    if not isinstance(articles, list) or not articles:
        return _invalid("news.articles is missing")
    if len(articles) > MAX_ARTICLES:
        return TOO_MANY_ARTICLES, f"articles exceed max count {MAX_ARTICLES}"
    for article in articles:
        if not isinstance(article, dict):
            return _invalid("news.articles items must be objects")
        refusal = _titled_refusal("news.articles", article, description_required=False)
        if refusal:
            return refusal
        if "picurl" in article and not _url_ok(article["picurl"]):
            return _invalid("news.articles.picurl is invalid")
    return None


def _titled_refusal(what: str, section: Mapping[str, Any], *, description_required: bool) -> Refusal | None:
    """A textcard's or an article's title, description and url."""
    return (
        _bytes_refusal(what, section, "title", TITLE_BYTES, required=True)
        or _bytes_refusal(what, section, "description", DESCRIPTION_BYTES, required=description_required)
        or (None if _url_ok(section.get("url")) else _invalid(f"{what}.url is missing or invalid"))
    )


def _bytes_refusal(
    msgtype: str, section: Mapping[str, Any], key: str, most: int, *, required: bool
) -> Refusal | None:
    value = section.get(key, "")
    if not isinstance(value, str) or (required and not value):
        return _invalid(f"{msgtype}.{key} is missing")
    if len(value.encode("utf-8")) > most:
        return _invalid(f"{msgtype}.{key} exceed max length {most}")
    return None


def _url_ok(url: object) -> bool:
    return (
        isinstance(url, str)
        and url.startswith(("http://", "https://"))
        and len(url.encode("utf-8")) <= URL_BYTES
    )


def _invalid(what: str) -> Refusal:
    return INVALID_PARAMETER, f"invalid Request Parameter, {what}"
