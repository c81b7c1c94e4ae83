"""Template cards end to end: the fake WeCom's card rules and one-use response codes
(docs/wecom-api.md §4.3-4.4), the client's update_template_card, and the
CallbackClient test helper checked against the crypto vectors and CallbackCrypto.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.crypto import CallbackCrypto
from alertbridge.messengers.wecom.errcodes import ErrCode
from alertbridge.messengers.wecom.errors import PermanentWeComAPIError
from alertbridge.messengers.wecom.inbound import EventMessage, TextMessage, dedup_key, parse_inbound
from alertbridge.testing.fake_wecom import (
    DEFAULT_AGENT_ID,
    DEFAULT_CORP_ID,
    DEFAULT_SECRET,
    MESSAGE_SEND,
    RESPONSE_CODE_LIFETIME,
    UPDATE_TEMPLATE_CARD,
    FakeApp,
    FakeWeCom,
    Fault,
    ManualClock,
)
from alertbridge.testing.server import SwappableApp
from alertbridge.testing.wecom_callback import CallbackClient

DEFAULT_APP = FakeApp()
OTHER_APP = FakeApp(corp_id=DEFAULT_CORP_ID, secret="other-app-secret", agent_id=1000003)
VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "wecom_crypto_vectors.json").read_text(encoding="utf-8")
)["vectors"]
BY_ID = {v["id"]: v for v in VECTORS}


@pytest.fixture
def fake(clock: ManualClock) -> FakeWeCom:
    return FakeWeCom([DEFAULT_APP, OTHER_APP], clock=clock)


@pytest.fixture
async def http(wecom_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=wecom_url, timeout=5) as client:
        yield client


async def get_token(http: httpx.AsyncClient, app: FakeApp = DEFAULT_APP) -> str:
    answer = (
        await http.get("/cgi-bin/gettoken", params={"corpid": app.corp_id, "corpsecret": app.secret})
    ).json()
    return str(answer["access_token"])


def card(task_id: str | None = "alert-42-1", **overrides: Any) -> dict[str, Any]:
    template: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": "磁盘告警", "desc": "node-1 /data 95%"},
        "button_list": [
            {"text": "确认", "style": 1, "key": "ack:42"},
            {"text": "静默1小时", "style": 2, "key": "silence:42:1h"},
        ],
    }
    if task_id is not None:
        template["task_id"] = task_id
    template.update(overrides)
    return template


def card_body(template: dict[str, Any], *, agent_id: int = DEFAULT_AGENT_ID, **extra: Any) -> dict[str, Any]:
    return {
        "touser": "zhangsan",
        "msgtype": "template_card",
        "agentid": agent_id,
        "template_card": template,
        **extra,
    }


async def send(http: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/cgi-bin/message/send", params={"access_token": token}, json=body)
    return dict(response.json())


async def update(http: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(
        "/cgi-bin/message/update_template_card", params={"access_token": token}, json=body
    )
    return dict(response.json())


def grey_out(code: str, *, agent_id: int = DEFAULT_AGENT_ID, **extra: Any) -> dict[str, Any]:
    return {
        "userids": ["zhangsan"],
        "agentid": agent_id,
        "response_code": code,
        "button": {"replace_name": "已确认"},
        **extra,
    }


# ---- sending cards -----------------------------------------------------------------


async def test_button_card_is_answered_with_a_fresh_response_code(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    token = await get_token(http)
    first = await send(http, token, card_body(card("t-1")))
    second = await send(http, token, card_body(card("t-2")))

    assert first["errcode"] == 0 and first["msgid"]
    assert (
        first["response_code"]
        and second["response_code"]
        and first["response_code"] != second["response_code"]
    )
    [one, two] = fake.messages(MESSAGE_SEND)
    assert (one.msgtype, one.task_id, one.response_code) == ("template_card", "t-1", first["response_code"])
    assert one.body["template_card"]["button_list"][0]["key"] == "ack:42"
    assert two.task_id == "t-2"


async def test_notice_card_needs_no_task_id_and_gets_no_response_code(http: httpx.AsyncClient) -> None:
    token = await get_token(http)
    notice = {
        "card_type": "text_notice",
        "main_title": {"title": "恢复"},
        "card_action": {"type": 1, "url": "https://x"},
    }
    answer = await send(http, token, card_body(notice))
    assert answer["errcode"] == 0
    assert "response_code" not in answer


@pytest.mark.parametrize(
    ("task_id", "errcode"),
    [
        (None, 40058),
        ("", 40058),
        ("has space", 40058),
        ("任务", 40058),
        ("a" * 129, 40058),
        ("a" * 128, 0),
        ("Az09_-@", 0),
    ],
    ids=["missing", "empty", "space", "non-ascii", "129-bytes", "128-bytes", "all-allowed-chars"],
)
async def test_task_id_rules(http: httpx.AsyncClient, task_id: str | None, errcode: int) -> None:
    token = await get_token(http)
    assert (await send(http, token, card_body(card(task_id))))["errcode"] == errcode


async def test_task_id_is_unique_per_app(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token, other_token = await get_token(http), await get_token(http, OTHER_APP)
    assert (await send(http, token, card_body(card("dup"))))["errcode"] == 0
    reused = await send(http, token, card_body(card("dup")))
    assert reused["errcode"] == 40058 and "task_id" in reused["errmsg"]
    assert (await send(http, other_token, card_body(card("dup"), agent_id=OTHER_APP.agent_id)))[
        "errcode"
    ] == 0
    assert len(fake.messages(MESSAGE_SEND)) == 2


async def test_duplicate_check_does_not_take_the_task_id_twice(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    token = await get_token(http)
    body = card_body(card("same"), enable_duplicate_check=1)
    first, again = await send(http, token, body), await send(http, token, body)
    assert (first["errcode"], again["errcode"]) == (0, 0)
    assert again["msgid"] == first["msgid"] and "response_code" not in again
    assert [d.reason for d in fake.dropped()] == ["duplicate"]


@pytest.mark.parametrize(
    ("template", "errcode"),
    [
        (card(card_type="nonsense_card"), 42031),
        (card(card_type=["button_interaction"]), 42031),
        (card(main_title={"desc": "no title"}), 42033),
        (card(main_title=None), 42033),
        (card(main_title=None, sub_title_text="只有副标题"), 0),
        (card(button_list=[]), 40058),
        (card(button_list=None), 40058),
        (card(button_list=[{"text": f"b{i}", "key": f"k{i}"} for i in range(7)]), 40058),
        (card(button_list=[{"text": f"b{i}", "key": f"k{i}"} for i in range(6)]), 0),
        (card(button_list=[{"key": "k"}]), 42038),
        (card(button_list=[{"text": "", "key": "k"}]), 42038),
        (card(button_list=[{"text": "ok"}]), 42039),
        (card(button_list=[{"text": "ok", "key": ""}]), 42039),
        (card(button_list=[{"text": "ok", "key": "k" * 1025}]), 42039),
        (card(button_list=[{"text": "ok", "key": "键" * 341}]), 0),  # 1023 bytes
        (card(button_list=[{"text": "a", "key": "k"}, {"text": "b", "key": "k"}]), 42039),
        (card(button_list=[{"text": "open", "type": 1, "url": "https://grafana.invalid"}]), 0),
        (card(button_list=[{"text": "open", "type": 1}]), 42028),
        (card(button_list=[{"text": "x", "key": "k", "type": 2}]), 40058),
    ],
    ids=[
        "bad-card-type",
        "card-type-not-a-string",
        "no-title",
        "no-main-title",
        "sub-title-only",
        "no-buttons",
        "null-buttons",
        "seven-buttons",
        "six-buttons",
        "button-without-text",
        "button-empty-text",
        "button-without-key",
        "button-empty-key",
        "key-1025-bytes",
        "key-1023-bytes",
        "duplicate-keys",
        "url-button",
        "url-button-without-url",
        "bad-button-type",
    ],
)
async def test_button_card_rules(http: httpx.AsyncClient, template: dict[str, Any], errcode: int) -> None:
    token = await get_token(http)
    template = {k: v for k, v in template.items() if v is not None}
    assert (await send(http, token, card_body(template)))["errcode"] == errcode


# ---- updating cards ------------------------------------------------------------------


async def test_send_response_code_updates_once(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]

    assert await update(http, token, grey_out(code)) == {"errcode": 0, "errmsg": "ok", "invaliduser": []}
    again = await update(http, token, grey_out(code))
    assert again["errcode"] == 60140

    [done] = fake.card_updates()
    assert (done.task_id, done.response_code, done.userids, done.replace_name) == (
        "t-1",
        code,
        ("zhangsan",),
        "已确认",
    )
    assert done.template_card is None and done.agent_id == DEFAULT_AGENT_ID
    assert (await http.get("/_fake/card-updates")).json()[0]["replace_name"] == "已确认"


async def test_each_callback_brings_a_fresh_one_use_code(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    sent = (await send(http, token, card_body(card("t-1"))))["response_code"]
    assert (await update(http, token, grey_out(sent)))["errcode"] == 0

    first_click, second_click = fake.new_response_code_for("t-1"), fake.new_response_code_for("t-1")
    assert len({sent, first_click, second_click}) == 3
    assert (await update(http, token, grey_out(first_click)))["errcode"] == 0
    assert (await update(http, token, grey_out(first_click)))["errcode"] == 60140
    assert (await update(http, token, grey_out(second_click)))["errcode"] == 0
    assert [u.response_code for u in fake.card_updates()] == [sent, first_click, second_click]


async def test_response_code_over_http(http: httpx.AsyncClient) -> None:
    token = await get_token(http)
    await send(http, token, card_body(card("t-1")))
    minted = (await http.post("/_fake/response-codes", json={"task_id": "t-1"})).json()
    assert minted["ok"] and (await update(http, token, grey_out(minted["response_code"])))["errcode"] == 0
    assert (await http.post("/_fake/response-codes", json={"task_id": "nope"})).status_code == 400
    assert (await http.post("/_fake/response-codes", json={})).status_code == 400


async def test_codes_for_unknown_or_ambiguous_cards_cannot_be_minted(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    with pytest.raises(ValueError, match="no card"):
        fake.new_response_code_for("never-sent")
    token, other_token = await get_token(http), await get_token(http, OTHER_APP)
    await send(http, token, card_body(card("shared")))
    await send(http, other_token, card_body(card("shared"), agent_id=OTHER_APP.agent_id))
    with pytest.raises(ValueError, match="several apps"):
        fake.new_response_code_for("shared")
    code = fake.new_response_code_for("shared", agent_id=OTHER_APP.agent_id)
    assert (await update(http, other_token, grey_out(code, agent_id=OTHER_APP.agent_id)))["errcode"] == 0


async def test_response_codes_expire_after_24_hours(
    http: httpx.AsyncClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    token = await get_token(http)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]
    fresh = fake.new_response_code_for("t-1")
    clock.advance(RESPONSE_CODE_LIFETIME - 1)
    token = await get_token(http)  # access tokens live only 2 h
    assert (await update(http, token, grey_out(fresh)))["errcode"] == 0
    clock.advance(1)
    expired = await update(http, token, grey_out(code))
    assert expired["errcode"] == 60140 and "expired" in expired["errmsg"]


async def test_response_code_lifetime_is_configurable(
    http: httpx.AsyncClient, wecom_url: str, clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    short = FakeWeCom([DEFAULT_APP], clock=clock, response_code_lifetime=60)
    wecom_slot[0].target = short.app
    token = await get_token(http)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]
    clock.advance(60)
    assert (await update(http, token, grey_out(code)))["errcode"] == 60140


@pytest.mark.parametrize("code", ["", "never-issued"])
async def test_unknown_codes(http: httpx.AsyncClient, code: str) -> None:
    token = await get_token(http)
    await send(http, token, card_body(card("t-1")))
    expected = 40058 if not code else 60140  # missing is a bad parameter, unknown an invalid code
    assert (await update(http, token, grey_out(code)))["errcode"] == expected


async def test_a_code_works_only_for_its_own_app(http: httpx.AsyncClient) -> None:
    token, other_token = await get_token(http), await get_token(http, OTHER_APP)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]
    assert (await update(http, other_token, grey_out(code, agent_id=OTHER_APP.agent_id)))["errcode"] == 60140
    assert (await update(http, token, grey_out(code)))["errcode"] == 0


async def test_update_checks_token_and_agentid_like_send(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]
    assert (await update(http, "", grey_out(code)))["errcode"] == 41001
    assert (await update(http, "bogus", grey_out(code)))["errcode"] == 40014
    assert (await update(http, token, grey_out(code, agent_id=OTHER_APP.agent_id)))["errcode"] == 301002
    no_agent = grey_out(code)
    del no_agent["agentid"]
    assert (await update(http, token, no_agent))["errcode"] == 40056
    fake.expire_tokens()
    assert (await update(http, token, grey_out(code)))["errcode"] == 42001
    # None of the refusals used the code up.
    assert (await update(http, await get_token(http), grey_out(code)))["errcode"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"button": None},
        {"template_card": card("t-1")},
        {"button": {}},
        {"button": {"replace_name": ""}},
        {"button": None, "template_card": card("t-1", button_list=[])},
        {"userids": "zhangsan"},
        {"userids": ["u"] * 1001},
        {"partyids": list(range(101))},
        {"atall": 2},
    ],
    ids=[
        "neither",
        "both",
        "empty-button",
        "empty-replace-name",
        "invalid-new-card",
        "userids-not-a-list",
        "too-many-userids",
        "too-many-partyids",
        "bad-atall",
    ],
)
async def test_invalid_update_bodies_do_not_spend_the_code(
    http: httpx.AsyncClient, fake: FakeWeCom, change: dict[str, Any]
) -> None:
    token = await get_token(http)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]
    body = {k: v for k, v in {**grey_out(code), **change}.items() if v is not None}
    assert (await update(http, token, body))["errcode"] == 40058
    assert fake.card_updates() == []
    assert (await update(http, token, grey_out(code)))["errcode"] == 0


async def test_a_whole_new_card_can_replace_the_old_one(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]
    new_card = card("t-1", main_title={"title": "已确认 by zhangsan"})
    body = {"atall": 1, "agentid": DEFAULT_AGENT_ID, "response_code": code, "template_card": new_card}
    assert (await update(http, token, body))["errcode"] == 0
    [done] = fake.card_updates()
    assert done.atall and done.replace_name is None and done.template_card == new_card


async def test_faults_and_reset_cover_card_updates(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    code = (await send(http, token, card_body(card("t-1"))))["response_code"]
    fake.add_fault(UPDATE_TEMPLATE_CARD, Fault(errcode=-1))
    assert (await update(http, token, grey_out(code)))["errcode"] == -1
    assert fake.request_count(UPDATE_TEMPLATE_CARD) == 1
    fake.reset()
    assert (await update(http, token, grey_out(code)))["errcode"] == 60140  # codes are forgotten
    assert (await send(http, token, card_body(card("t-1"))))["errcode"] == 0  # and task ids


# ---- the client ----------------------------------------------------------------------

APP = WeComAppConfig(corp_id=DEFAULT_CORP_ID, agent_id=DEFAULT_AGENT_ID, secret=SecretStr(DEFAULT_SECRET))


@pytest.fixture
async def client(wecom_url: str, clock: ManualClock) -> AsyncIterator[WeComClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield WeComClient(http, wecom_url, clock=clock)


def client_card() -> dict[str, Any]:
    return {"touser": "zhangsan", "msgtype": "template_card", "template_card": card("alert-7-1")}


async def test_client_sends_a_card_and_updates_it(client: WeComClient, fake: FakeWeCom) -> None:
    result = await client.send_app_message("ops", APP, client_card())
    assert result.response_code and result.msgid
    await client.update_template_card(
        "ops",
        APP,
        {
            "userids": ["zhangsan"],
            "response_code": result.response_code,
            "button": {"replace_name": "已确认"},
        },
    )
    [done] = fake.card_updates()
    assert done.body["agentid"] == DEFAULT_AGENT_ID and done.response_code == result.response_code


async def test_client_text_send_has_no_response_code(client: WeComClient) -> None:
    result = await client.send_app_message(
        "ops", APP, {"touser": "a", "msgtype": "text", "text": {"content": "x"}}
    )
    assert result.response_code == ""


@pytest.mark.parametrize("errcode", [40014, 42001])
async def test_client_update_replays_once_on_a_token_error(
    client: WeComClient, fake: FakeWeCom, errcode: int
) -> None:
    code = (await client.send_app_message("ops", APP, client_card())).response_code
    fake.add_fault(UPDATE_TEMPLATE_CARD, Fault(errcode=errcode))
    await client.update_template_card(
        "ops", APP, {"response_code": code, "button": {"replace_name": "已确认"}}
    )
    assert fake.request_count(UPDATE_TEMPLATE_CARD) == 2
    assert fake.gettoken_calls == 2 and client.token_replays == 1
    assert len(fake.card_updates()) == 1


async def test_client_update_survives_a_really_expired_token(client: WeComClient, fake: FakeWeCom) -> None:
    code = (await client.send_app_message("ops", APP, client_card())).response_code
    fake.expire_tokens()
    await client.update_template_card(
        "ops", APP, {"response_code": code, "button": {"replace_name": "已确认"}}
    )
    assert fake.gettoken_calls == 2 and len(fake.card_updates()) == 1


async def test_client_spent_response_code_is_permanent(client: WeComClient, fake: FakeWeCom) -> None:
    code = (await client.send_app_message("ops", APP, client_card())).response_code
    body = {"response_code": code, "button": {"replace_name": "已确认"}}
    await client.update_template_card("ops", APP, body)
    with pytest.raises(PermanentWeComAPIError) as caught:
        await client.update_template_card("ops", APP, body)
    assert caught.value.errcode == ErrCode.INVALID_RESPONSE_CODE
    assert int(ErrCode.INVALID_RESPONSE_CODE) == 60140
    assert caught.value.reason == "invalid_response_code"
    assert "24 hours" in str(caught.value)
    assert fake.request_count(UPDATE_TEMPLATE_CARD) == 2  # no replay of a spent code


# ---- CallbackClient: the helper that plays WeCom's side of the callback ------------

SIGNED = [v for v in VECTORS if v["kind"] != "verify_url_negative"]


@pytest.mark.parametrize("vector", SIGNED, ids=[v["id"] for v in SIGNED])
def test_callback_client_signs_like_the_vectors(vector: dict[str, Any]) -> None:
    helper = CallbackClient(
        "http://x", "/cb", vector["token"], vector["encoding_aes_key"], vector["receive_id"], 1
    )
    payload = vector.get("echostr") or vector.get("encrypt") or vector["expected_encrypt"]
    signature = vector.get("msg_signature") or vector["expected_msg_signature"]
    assert helper.sign(vector["timestamp"], vector["nonce"], payload) == signature
    crypto = CallbackCrypto(vector["token"], vector["encoding_aes_key"], vector["receive_id"])
    assert helper.sign("1", "n", "p") == crypto.signature("1", "n", "p")
    helper.close()


@pytest.mark.parametrize(
    ("vector_id", "prefix", "plaintext_field", "encrypt_field"),
    [
        ("wechatpy_encrypt_reply", b"1234567890123456", "reply_plaintext", "expected_encrypt"),
        ("goworkwx_decrypt_post", None, "expected_plaintext", "encrypt"),
    ],
)
def test_callback_client_and_callback_crypto_encrypt_like_the_vectors(
    vector_id: str, prefix: bytes | None, plaintext_field: str, encrypt_field: str
) -> None:
    vector = BY_ID[vector_id]
    prefix = prefix or bytes.fromhex(vector["random_prefix_hex"])
    args = (vector["token"], vector["encoding_aes_key"], vector["receive_id"])
    helper = CallbackClient("http://x", "/cb", *args, 1, random_bytes=lambda n: prefix)
    crypto = CallbackCrypto(*args, random_bytes=lambda n: prefix)
    plaintext = vector[plaintext_field].encode()
    assert helper.encrypt(plaintext) == crypto.encrypt(plaintext) == vector[encrypt_field]
    helper.close()


def test_callback_client_opens_the_reply_vector() -> None:
    vector = BY_ID["wechatpy_encrypt_reply"]
    helper = CallbackClient(
        "http://x", "/cb", vector["token"], vector["encoding_aes_key"], vector["receive_id"], 1
    )
    assert (
        helper.decrypt_reply(vector["expected_response_xml"].encode()) == vector["reply_plaintext"].encode()
    )
    forged = vector["expected_response_xml"].replace("407518b7", "407518b8").encode()
    with pytest.raises(AssertionError):
        helper.decrypt_reply(forged)
    helper.close()


TOKEN = "kjr2TKI8umCBfVF3wAHk8JiPwma5VBme"
AES_KEY = "4Ma3YBrSBbX2aez8MJpXGBne5LSDwgGqHbhM9WPYIws"
CORP_ID = "ww6a112864f8022910"


class CryptoEndpoint:
    """What the service does with a callback, via CallbackCrypto: answers the
    URL check, parses messages, and keeps what it received."""

    def __init__(self) -> None:
        self.crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
        self.requests: list[httpx.Request] = []
        self.messages: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        params = request.url.params
        signed = (params["msg_signature"], params["timestamp"], params["nonce"])
        if request.method == "GET":
            return httpx.Response(200, content=self.crypto.verify_url(*signed, params["echostr"]))
        self.messages.append(parse_inbound(self.crypto.open_message(*signed, request.content)))
        reply = self.crypto.seal_reply(
            b"<xml><Content>ok</Content></xml>", params["timestamp"], params["nonce"]
        )
        return httpx.Response(200, content=reply)


@pytest.fixture
def endpoint() -> CryptoEndpoint:
    return CryptoEndpoint()


@pytest.fixture
def wecom(endpoint: CryptoEndpoint, fake: FakeWeCom) -> Iterator[CallbackClient]:
    http = httpx.Client(transport=httpx.MockTransport(endpoint))
    helper = CallbackClient(
        "http://alertbridge.invalid",
        "/wecom/callback/ops",
        TOKEN,
        AES_KEY,
        CORP_ID,
        1000002,
        http=http,
        response_codes=fake.new_response_code_for,
        clock=lambda: 1_700_000_000.0,
    )
    yield helper
    http.close()


def test_url_check_is_percent_encoded_and_verifies(wecom: CallbackClient, endpoint: CryptoEndpoint) -> None:
    for plain in ("94966531020182955848408", "1616140317555161061", "x" * 40):
        assert wecom.verify_url(plain).text == plain
    for request in endpoint.requests:
        query = request.url.query.decode()
        assert request.method == "GET" and request.url.path == "/wecom/callback/ops"
        assert "+" not in query and "/" not in query and query.count("=") == 4  # only the separators
        echostr = parse_qs(query)["echostr"][0]
        assert endpoint.crypto.decrypt(echostr)


def test_messages_arrive_as_wecom_sends_them(wecom: CallbackClient, endpoint: CryptoEndpoint) -> None:
    assert wecom.send_text("zhangsan", "ack 42 ]]> <b>&", msg_id="777").status_code == 200
    wecom.click_menu("lisi", "silences")
    wecom.enter_agent("wangwu")
    wecom.click_button("zhaoliu", "t-9", "ack:42", response_code="given-code")

    assert endpoint.messages == [
        TextMessage("zhangsan", 1_700_000_000, "777", 1000002, "ack 42 ]]> <b>&"),
        EventMessage("lisi", 1_700_000_000, 1000002, "click", event_key="silences"),
        EventMessage("wangwu", 1_700_000_000, 1000002, "enter_agent"),
        EventMessage(
            "zhaoliu",
            1_700_000_000,
            1000002,
            "template_card_event",
            event_key="ack:42",
            task_id="t-9",
            card_type="button_interaction",
            response_code="given-code",
        ),
    ]
    envelope = endpoint.requests[0].content.decode()
    assert envelope.startswith(f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[")
    assert envelope.endswith("<AgentID><![CDATA[1000002]]></AgentID></xml>")


def test_passive_replies_can_be_checked(wecom: CallbackClient) -> None:
    response = wecom.send_text("zhangsan", "help")
    assert wecom.decrypt_reply(response.content) == b"<xml><Content>ok</Content></xml>"


async def test_clicks_on_cards_the_fake_sent_carry_usable_codes(
    http: httpx.AsyncClient, fake: FakeWeCom, wecom: CallbackClient, endpoint: CryptoEndpoint
) -> None:
    token = await get_token(http)
    await send(http, token, card_body(card("t-1")))
    wecom.click_button("zhangsan", "t-1", "ack:42")
    [click] = endpoint.messages
    assert isinstance(click, EventMessage) and click.response_code
    assert (await update(http, token, grey_out(click.response_code)))["errcode"] == 0


def test_resend_is_byte_identical_and_dedups(wecom: CallbackClient, endpoint: CryptoEndpoint) -> None:
    wecom.send_text("zhangsan", "ack 1")
    wecom.resend()
    first, again = endpoint.requests
    assert (first.url, first.content) == (again.url, again.content)
    assert dedup_key(endpoint.messages[0]) == dedup_key(endpoint.messages[1])


def test_raw_requests_reach_the_endpoint_unchanged() -> None:
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(403)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    with CallbackClient("http://h/", "/cb", TOKEN, AES_KEY, CORP_ID, 1, http=http) as helper:
        assert helper.post_raw({"msg_signature": "bad", "timestamp": "1"}, b"<xml/>").status_code == 403
        assert helper.get_raw({"echostr": "a+b"}).status_code == 403
    assert seen[0].content == b"<xml/>" and seen[0].url.params["msg_signature"] == "bad"
    assert seen[1].method == "GET" and seen[1].url.params["echostr"] == "a+b"
    http.close()
