"""The plaintext of passive replies (docs/wecom-api.md §3.4): well-formed XML
whatever the text holds, and a text cut to WeCom's 2048 bytes without
splitting a character."""

from __future__ import annotations

from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DefusedET  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from alertbridge.messengers.wecom.passive import MAX_TEXT_BYTES, button_reply, text_reply

# XML 1.0 cannot carry most control characters, whatever the escaping.
_XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=300)


@given(_XML_TEXT)
def test_any_text_comes_back_as_written(text: str) -> None:
    root: Element = DefusedET.fromstring(text_reply("zhangsan", "ww1", text + "]]>", 1700000000))
    assert root.findtext("Content") == text + "]]>"
    assert root.findtext("ToUserName") == "zhangsan" and root.findtext("FromUserName") == "ww1"
    assert (root.findtext("MsgType"), root.findtext("CreateTime")) == ("text", "1700000000")


def test_a_long_text_is_cut_at_a_character_boundary() -> None:
    root: Element = DefusedET.fromstring(text_reply("u", "ww1", "告警" * 1000, 1))
    content = root.findtext("Content") or ""
    assert len(content.encode("utf-8")) <= MAX_TEXT_BYTES
    assert content == "告警" * 341  # 682 whole characters of 3 bytes: 2046 bytes


def test_a_button_update_carries_the_new_label() -> None:
    root: Element = DefusedET.fromstring(button_reply("zhaoliu", "ww1", "已确认 · zhaoliu", 1))
    assert root.findtext("MsgType") == "update_button"
    assert root.findtext("Button/ReplaceName") == "已确认 · zhaoliu"
