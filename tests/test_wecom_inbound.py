"""Decrypted callback XML into typed messages, and the keys that spot WeCom's re-sends
(docs/wecom-api.md §3)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.messengers.wecom.callback_errors import MalformedMessage
from alertbridge.messengers.wecom.inbound import (
    EventMessage,
    InboundMessage,
    MediaMessage,
    OtherMessage,
    TextMessage,
    dedup_key,
    parse_inbound,
)

VECTORS = {
    v["id"]: v
    for v in json.loads((Path(__file__).parent / "data" / "wecom_crypto_vectors.json").read_text("utf-8"))[
        "vectors"
    ]
}

ENTER_AGENT = b"""<xml><ToUserName><![CDATA[ww7c3a9e0d1f2b4c5a]]></ToUserName>
<FromUserName><![CDATA[zhangsan]]></FromUserName>
<CreateTime>1700000000</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[enter_agent]]></Event>
<EventKey><![CDATA[]]></EventKey>
<AgentID>1000002</AgentID>
</xml>"""

CLICK = b"""<xml><ToUserName><![CDATA[ww7c3a9e0d1f2b4c5a]]></ToUserName>
<FromUserName><![CDATA[lisi]]></FromUserName>
<CreateTime>1700000001</CreateTime>
<MsgType><![CDATA[EVENT]]></MsgType>
<Event><![CDATA[CLICK]]></Event>
<EventKey><![CDATA[silences]]></EventKey>
<AgentID>1000002</AgentID>
</xml>"""

# The shape of WxJava's WxCpXmlMessageTest.testTemplateCardEvent, with SelectedItems.
TEMPLATE_CARD_EVENT = b"""<xml><ToUserName><![CDATA[ww7c3a9e0d1f2b4c5a]]></ToUserName>
<FromUserName><![CDATA[wangwu]]></FromUserName>
<CreateTime>1700000002</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[template_card_event]]></Event>
<EventKey><![CDATA[ack]]></EventKey>
<TaskId><![CDATA[alert-42-1]]></TaskId>
<CardType><![CDATA[button_interaction]]></CardType>
<ResponseCode><![CDATA[ResponseCode-abc]]></ResponseCode>
<AgentID>1000002</AgentID>
<SelectedItems>
  <SelectedItem>
    <QuestionKey><![CDATA[QuestionKey1]]></QuestionKey>
    <OptionIds><OptionId><![CDATA[OptionId1]]></OptionId><OptionId><![CDATA[OptionId2]]></OptionId></OptionIds>
  </SelectedItem>
</SelectedItems>
</xml>"""

IMAGE = b"""<xml><ToUserName><![CDATA[ww7c3a9e0d1f2b4c5a]]></ToUserName>
<FromUserName><![CDATA[zhaoliu]]></FromUserName>
<CreateTime>1700000003</CreateTime>
<MsgType><![CDATA[image]]></MsgType>
<PicUrl><![CDATA[https://example.invalid/a.png]]></PicUrl>
<MediaId><![CDATA[media-1]]></MediaId>
<MsgId>1234567890123456</MsgId>
<AgentID>1000002</AgentID>
</xml>"""

SUBSCRIBE = (
    b"<xml><ToUserName>ww1</ToUserName><FromUserName>zhangsan</FromUserName><CreateTime>1700000004</CreateTime>"
    b"<MsgType>event</MsgType><Event>subscribe</Event><AgentID>1000002</AgentID></xml>"
)


def test_text_message_from_the_doc_vector() -> None:
    message = parse_inbound(VECTORS["doc_decrypt_post"]["expected_plaintext"].encode())
    assert message == TextMessage(
        from_user="mycreate",
        create_time=1409659813,
        msg_id="4561255354251345929",
        agent_id=218,
        content="hello",
    )


def test_text_message_without_cdata_and_with_chinese() -> None:
    message = parse_inbound(VECTORS["sbzhu_decrypt_post"]["expected_plaintext"].encode())
    assert message == TextMessage("ChenJiaShun", 1476422779, "1456453720", 1000002, "你好")


def test_enter_agent() -> None:
    assert parse_inbound(ENTER_AGENT) == EventMessage("zhangsan", 1700000000, 1000002, "enter_agent")


def test_click_is_lower_cased() -> None:
    message = parse_inbound(CLICK)
    assert message == EventMessage("lisi", 1700000001, 1000002, "click", event_key="silences")


def test_template_card_event_ignores_selected_items() -> None:
    message = parse_inbound(TEMPLATE_CARD_EVENT)
    assert message == EventMessage(
        from_user="wangwu",
        create_time=1700000002,
        agent_id=1000002,
        event="template_card_event",
        event_key="ack",
        task_id="alert-42-1",
        card_type="button_interaction",
        response_code="ResponseCode-abc",
    )


def test_template_card_menu_event() -> None:
    xml = TEMPLATE_CARD_EVENT.replace(b"template_card_event", b"template_card_menu_event")
    message = parse_inbound(xml)
    assert isinstance(message, EventMessage)
    assert (message.event, message.task_id, message.event_key) == (
        "template_card_menu_event",
        "alert-42-1",
        "ack",
    )


def test_subscribe_without_event_key() -> None:
    assert parse_inbound(SUBSCRIBE) == EventMessage("zhangsan", 1700000004, 1000002, "subscribe")


def test_image_voice_and_file_carry_their_media_id() -> None:
    assert parse_inbound(IMAGE) == MediaMessage(
        "zhaoliu", 1700000003, "1234567890123456", 1000002, "image", "media-1"
    )
    voice = IMAGE.replace(b"[image]", b"[voice]").replace(b"<AgentID>", b"<Format>AMR</Format><AgentID>")
    assert parse_inbound(voice) == MediaMessage(
        "zhaoliu", 1700000003, "1234567890123456", 1000002, "voice", "media-1", format="amr"
    )
    file = IMAGE.replace(b"[image]", b"[file]").replace(
        b"<AgentID>", "<FileName>报表.pdf</FileName><AgentID>".encode()
    )
    assert parse_inbound(file) == MediaMessage(
        "zhaoliu", 1700000003, "1234567890123456", 1000002, "file", "media-1", filename="报表.pdf"
    )
    with pytest.raises(MalformedMessage, match="MediaId"):
        parse_inbound(IMAGE.replace(b"<MediaId><![CDATA[media-1]]></MediaId>", b""))


def test_location_is_another_message() -> None:
    location = IMAGE.replace(b"[image]", b"[location]")
    assert parse_inbound(location) == OtherMessage(
        "zhaoliu", 1700000003, "location", "1234567890123456", 1000002
    )


def test_text_content_keeps_whitespace_and_markup_characters() -> None:
    xml = VECTORS["doc_decrypt_post"]["expected_plaintext"].replace("hello", "  <ack> & 12\n").encode()
    message = parse_inbound(xml)
    assert isinstance(message, TextMessage)
    assert message.content == "  <ack> & 12\n"


def test_messages_are_frozen() -> None:
    message = parse_inbound(CLICK)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.from_user = "mallory"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("xml", "problem"),
    [
        (b"", "does not parse"),
        (b"<xml>", "does not parse"),
        (b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml>&x;</xml>', "refused"),
        (b"<!DOCTYPE xml><xml/>", "refused"),
        (b"<message><FromUserName>a</FromUserName></message>", "root"),
        (SUBSCRIBE.replace(b"<FromUserName>zhangsan</FromUserName>", b""), "FromUserName"),
        (SUBSCRIBE.replace(b"1700000004", b"yesterday"), "CreateTime"),
        (SUBSCRIBE.replace(b"<MsgType>event</MsgType>", b""), "MsgType"),
        (SUBSCRIBE.replace(b"<Event>subscribe</Event>", b""), "Event"),
        (SUBSCRIBE.replace(b"1000002", b"ops"), "AgentID"),
        (
            VECTORS["doc_decrypt_post"]["expected_plaintext"]
            .replace("<MsgId>4561255354251345929</MsgId>", "")
            .encode(),
            "MsgId",
        ),
    ],
    ids=[
        "empty",
        "unclosed",
        "xxe",
        "dtd",
        "root",
        "no-from",
        "bad-time",
        "no-type",
        "no-event",
        "bad-agent",
        "text-without-msgid",
    ],
)
def test_malformed_messages(xml: bytes, problem: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_inbound(xml)
    assert problem in caught.value.reason


@settings(max_examples=300, deadline=None)
@given(xml=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: f"<xml>{t}</xml>".encode()))
def test_arbitrary_bytes_parse_or_are_malformed_never_crash(xml: bytes) -> None:
    try:
        message = parse_inbound(xml)
    except MalformedMessage:
        return
    assert isinstance(message, TextMessage | EventMessage | MediaMessage | OtherMessage)


# ---- dedup keys ---------------------------------------------------------------------


def test_message_key_is_the_msg_id() -> None:
    assert dedup_key(parse_inbound(VECTORS["doc_decrypt_post"]["expected_plaintext"].encode())) == (
        "msg:4561255354251345929"
    )
    assert dedup_key(parse_inbound(IMAGE)) == "msg:1234567890123456"


def test_a_resent_message_has_the_same_key() -> None:
    # WeCom's retry carries the same MsgId; CreateTime or content changes do not matter.
    first = TextMessage("zhangsan", 1700000000, "42", 1000002, "ack 1")
    again = TextMessage("zhangsan", 1700000005, "42", 1000002, "ack 1")
    assert dedup_key(first) == dedup_key(again)
    assert dedup_key(first) != dedup_key(dataclasses.replace(first, msg_id="43"))


def test_event_key_is_user_time_event_key_and_task() -> None:
    click = parse_inbound(TEMPLATE_CARD_EVENT)
    assert isinstance(click, EventMessage)
    assert dedup_key(click) == 'event:["wangwu",1700000002,"template_card_event","ack","alert-42-1"]'
    # A retry of the same click may not be shown to carry the same ResponseCode: ignore it.
    assert dedup_key(dataclasses.replace(click, response_code="other")) == dedup_key(click)
    different: list[InboundMessage] = [
        dataclasses.replace(click, from_user="lisi"),
        dataclasses.replace(click, create_time=1700000003),
        dataclasses.replace(click, event="template_card_menu_event"),
        dataclasses.replace(click, event_key="silence_1h"),
        dataclasses.replace(click, task_id="alert-43-1"),
    ]
    assert len({dedup_key(m) for m in [click, *different]}) == 6


def test_event_keys_cannot_collide_through_separators() -> None:
    one = EventMessage("a|b", 1, None, "click", event_key="c")
    two = EventMessage("a", 1, None, "click", event_key="b|c")
    assert dedup_key(one) != dedup_key(two)


def test_message_and_event_keys_never_collide() -> None:
    keys = {dedup_key(parse_inbound(x)) for x in (ENTER_AGENT, CLICK, TEMPLATE_CARD_EVENT, IMAGE, SUBSCRIBE)}
    assert len(keys) == 5


def test_other_message_without_msg_id_still_has_a_key() -> None:
    message = OtherMessage("zhangsan", 1700000000, "location")
    assert dedup_key(message) == 'msg:["zhangsan",1700000000,"location"]'
