"""Callback XML read in one pass: WeCom's flat documents by the fast path, the rest by expat.

The oracle is the standard library's ElementTree on documents without a DTD
(so it cannot be led astray): every document the fast path reads must be one
ElementTree parses, with the same field texts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.messengers.wecom.callback_errors import MalformedMessage
from alertbridge.messengers.wecom.callback_xml import _flat_fields, xml_fields


def oracle(document: bytes) -> dict[str, str]:
    """The first direct child of each name and its text, as ElementTree reads it."""
    fields: dict[str, str] = {}
    for child in ET.fromstring(document):
        fields.setdefault(child.tag, child.text or "")
    return fields


# XML's characters (what WeCom's JSON-ish text may hold), "\r" included: XML reads it as "\n".
xml_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff").filter(
        lambda c: c in "\t\n\r" or ord(c) >= 0x20
    ),
    max_size=40,
)
tags = st.sampled_from(["ToUserName", "FromUserName", "Content", "MsgId", "Event", "A_1", "x"])


@st.composite
def flat_documents(draw: st.DrawFn) -> bytes:
    """Documents of WeCom's shape, values as CDATA or escaped text, in any mix."""
    parts = ["<xml>"]
    for tag, value, cdata, gap in draw(
        st.lists(st.tuples(tags, xml_text, st.booleans(), st.sampled_from(["", "\n", " \t"])), max_size=8)
    ):
        body = f"<![CDATA[{value}]]>" if cdata and "]]>" not in value else escape(value)
        parts.append(f"{gap}<{tag}>{body}</{tag}>")
    parts.append("</xml>\n")
    return "".join(parts).encode("utf-8")


@settings(max_examples=400, deadline=None)
@given(document=flat_documents())
def test_flat_documents_read_as_elementtree_reads_them(document: bytes) -> None:
    assert xml_fields(document, "message") == oracle(document)


@settings(max_examples=400, deadline=None)
@given(
    document=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: f"<xml>{t}</xml>".encode()),
        flat_documents().map(lambda d: d.replace(b"><", b">]<", 1)),
        flat_documents().map(lambda d: d[: len(d) // 2]),
    )
)
def test_the_fast_path_reads_only_well_formed_documents_and_reads_them_right(document: bytes) -> None:
    fast = _flat_fields(document)
    if fast is not None and b"<!" not in document.replace(b"<![CDATA[", b""):
        assert fast == oracle(document)
    try:
        fields = xml_fields(document, "message")
    except MalformedMessage:
        return
    assert isinstance(fields, dict)


def test_wecom_documents_take_the_fast_path() -> None:
    envelope = b"<xml><ToUserName><![CDATA[ww1]]></ToUserName><Encrypt><![CDATA[QUJD+/=]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    assert _flat_fields(envelope) == {"ToUserName": "ww1", "Encrypt": "QUJD+/=", "AgentID": "1000002"}
    message = b"<xml>\n<FromUserName><![CDATA[zhangsan]]></FromUserName>\n<CreateTime>1700000000</CreateTime>\n</xml>"
    assert _flat_fields(message) == {"FromUserName": "zhangsan", "CreateTime": "1700000000"}


@pytest.mark.parametrize(
    "document",
    [
        b"<xml><A>&amp;</A></xml>",  # a reference
        b"<xml><A>x]y</A></xml>",  # "]" outside CDATA
        b"<xml><A>1\r\n</A></xml>",  # "\r", which XML normalises
        b'<xml a="1"><A>1</A></xml>',  # attributes
        b"<xml><A><B>1</B></A></xml>",  # nesting
        b'<?xml version="1.0"?><xml><A>1</A></xml>',  # a declaration
        b"<!DOCTYPE xml><xml><A>1</A></xml>",  # a DTD
    ],
)
def test_other_shapes_are_left_to_expat(document: bytes) -> None:
    assert _flat_fields(document) is None


def test_expat_reads_what_the_fast_path_leaves() -> None:
    assert xml_fields(b"<xml><A>a &amp; b</A><B>x]y</B><C>1\r\n</C></xml>", "message") == {
        "A": "a & b",
        "B": "x]y",
        "C": "1\n",
    }


def test_a_dtd_is_refused_before_anything_is_read() -> None:
    with pytest.raises(MalformedMessage, match="refused: DTD"):
        xml_fields(b'<!DOCTYPE xml [<!ENTITY x "y">]><xml><A>&x;</A></xml>', "envelope")
