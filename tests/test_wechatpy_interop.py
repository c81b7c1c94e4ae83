"""Interop with code we did not write: wechatpy's WeCom crypto
(``wechatpy.enterprise.crypto.WeChatCrypto``) against our real server.

Callbacks that wechatpy encrypts and signs must be accepted, and the passive
replies our server answers with must decrypt and verify with wechatpy, so
neither side only agrees with our own helper (alertbridge.testing.wecom_callback).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DefusedET  # type: ignore[import-untyped]
import httpx
import pytest
from wechatpy.enterprise.crypto import WeChatCrypto  # type: ignore[import-untyped]
from wechatpy.exceptions import InvalidSignatureException  # type: ignore[import-untyped]

from alertbridge.testing.fake_wecom import FakeWeCom
from tests.callback_bridge import AES_KEY, TOKEN, Bridge, start_bridge
from tests.wecom_identity import AGENT_ID, CORP_ID


@pytest.fixture
def bridge(tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]) -> Bridge:
    return start_bridge(tmp_path, serve_wecom, serve_app)


def _post(bridge: Bridge, crypto: WeChatCrypto, plaintext: str) -> tuple[httpx.Response, str, str]:
    """POST ``plaintext`` encrypted and signed by wechatpy, as WeCom would."""
    timestamp, nonce = str(int(time.time())), "1372623149"
    sealed: Element = DefusedET.fromstring(crypto.encrypt_message(plaintext, nonce, timestamp))
    envelope = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{sealed.findtext('Encrypt')}]]></Encrypt>"
        f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>"
    )
    params = {"msg_signature": sealed.findtext("MsgSignature") or "", "timestamp": timestamp, "nonce": nonce}
    response = httpx.post(
        f"{bridge.base_url}/wecom/callback/ops", params=params, content=envelope.encode(), timeout=10
    )
    return response, timestamp, nonce


def _text(user: str, content: str, msg_id: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>"
    )


def test_wechatpy_callbacks_are_accepted_and_our_passive_replies_open_with_wechatpy(bridge: Bridge) -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
    response, _, _ = _post(bridge, crypto, _text("zhangsan", "帮助", 4561255354251345929))
    assert response.status_code == 200, response.text
    reply: Element = DefusedET.fromstring(response.content)
    plaintext = crypto.decrypt_message(
        response.content,
        reply.findtext("MsgSignature"),
        reply.findtext("TimeStamp"),
        reply.findtext("Nonce"),
    )
    message: Element = DefusedET.fromstring(plaintext)
    assert message.findtext("ToUserName") == "zhangsan"
    assert message.findtext("FromUserName") == CORP_ID
    assert message.findtext("MsgType") == "text"
    assert "可用命令" in (message.findtext("Content") or "")


def test_wechatpy_rejects_a_reply_signed_with_another_token(bridge: Bridge) -> None:
    """The check above is not vacuous: wechatpy does verify the signature."""
    response, _, _ = _post(bridge, WeChatCrypto(TOKEN, AES_KEY, CORP_ID), _text("lisi", "help", 17))
    reply: Element = DefusedET.fromstring(response.content)
    with pytest.raises(InvalidSignatureException):
        WeChatCrypto("otherToken1", AES_KEY, CORP_ID).decrypt_message(
            response.content,
            reply.findtext("MsgSignature"),
            reply.findtext("TimeStamp"),
            reply.findtext("Nonce"),
        )


def test_a_callback_wechatpy_signs_with_another_token_is_refused(bridge: Bridge) -> None:
    response, _, _ = _post(
        bridge, WeChatCrypto("otherToken1", AES_KEY, CORP_ID), _text("zhangsan", "help", 18)
    )
    assert response.status_code == 403
