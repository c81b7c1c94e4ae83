"""The fake WeCom API enforces the real API's rules (docs/wecom-api.md §4-5).

Everything runs over real HTTP against the fake served by uvicorn on
loopback, with a raw httpx client, so these tests check the fake itself and
not our WeCom client.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from alertbridge.testing.fake_wecom import (
    AGENT_GET,
    APPCHAT_CREATE,
    APPCHAT_GET,
    APPCHAT_SEND,
    DEFAULT_AGENT_ID,
    DEFAULT_CORP_ID,
    DEFAULT_ROBOT_KEY,
    DEFAULT_SECRET,
    GETTOKEN,
    MEDIA_UPLOAD,
    MESSAGE_RECALL,
    MESSAGE_SEND,
    TAG_GET,
    UPDATE_TEMPLATE_CARD,
    USER_GET,
    WEBHOOK_SEND,
    FakeApp,
    FakeWeCom,
    Fault,
    ManualClock,
    apps_from_args,
    build_parser,
)
from alertbridge.testing.server import ServerThread, SwappableApp, serve_in_thread

DEFAULT_APP = FakeApp()
OTHER_APP = FakeApp(corp_id=DEFAULT_CORP_ID, secret="other-app-secret", agent_id=1000003)
USERS = ["alice", "Bob", "carol"]


@pytest.fixture
def fake(clock: ManualClock) -> FakeWeCom:
    return FakeWeCom(
        [FakeApp(), OTHER_APP],
        [DEFAULT_ROBOT_KEY],
        users=USERS,
        parties=["1", "2"],
        tags=["7"],
        unlicensed_users=["carol"],
        clock=clock,
    )


@pytest.fixture
async def http(wecom_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=wecom_url, timeout=5) as client:
        yield client


async def get_token(http: httpx.AsyncClient, app: FakeApp = DEFAULT_APP) -> str:
    answer = (
        await http.get("/cgi-bin/gettoken", params={"corpid": app.corp_id, "corpsecret": app.secret})
    ).json()
    assert answer["errcode"] == 0, answer
    return str(answer["access_token"])


def text_body(content: str = "hello", *, touser: str = "alice", **extra: Any) -> dict[str, Any]:
    return {
        "touser": touser,
        "msgtype": "text",
        "agentid": DEFAULT_AGENT_ID,
        "text": {"content": content},
        **extra,
    }


async def send_app(http: httpx.AsyncClient, token: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    response = await http.post("/cgi-bin/message/send", params={"access_token": token}, content=content)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def send_robot(
    http: httpx.AsyncClient, body: dict[str, Any], key: str = DEFAULT_ROBOT_KEY
) -> dict[str, Any]:
    content = json.dumps(body, ensure_ascii=False).encode()
    response = await http.post("/cgi-bin/webhook/send", params={"key": key}, content=content)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


# ---- gettoken -------------------------------------------------------------


async def test_gettoken_checks_corp_id_then_secret_and_counts_calls(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    unknown_corp = await http.get(
        "/cgi-bin/gettoken", params={"corpid": "nope", "corpsecret": DEFAULT_SECRET}
    )
    wrong_secret = await http.get(
        "/cgi-bin/gettoken", params={"corpid": DEFAULT_CORP_ID, "corpsecret": "nope"}
    )
    good = await http.get(
        "/cgi-bin/gettoken", params={"corpid": DEFAULT_CORP_ID, "corpsecret": DEFAULT_SECRET}
    )

    assert unknown_corp.json()["errcode"] == 40013
    assert wrong_secret.json()["errcode"] == 40001
    assert good.json()["errcode"] == 0
    assert good.json()["expires_in"] == 7200
    assert fake.gettoken_calls == 3


async def test_every_gettoken_issues_a_fresh_token(http: httpx.AsyncClient) -> None:
    assert await get_token(http) != await get_token(http)


async def test_token_lifetime_is_configurable(clock: ManualClock) -> None:
    fake = FakeWeCom(token_lifetime=30, clock=clock)
    with fake.serve() as url:
        async with httpx.AsyncClient(base_url=url) as http:
            answer = (
                await http.get(
                    "/cgi-bin/gettoken",
                    params={"corpid": DEFAULT_CORP_ID, "corpsecret": DEFAULT_SECRET},
                )
            ).json()
            assert answer["expires_in"] == 30
            clock.advance(30)
            assert (await send_app(http, answer["access_token"], text_body()))["errcode"] == 42001


# ---- message/send: token and body -----------------------------------------


async def test_send_token_missing_unknown_and_expired(http: httpx.AsyncClient, clock: ManualClock) -> None:
    token = await get_token(http)
    assert (await send_app(http, "", text_body()))["errcode"] == 41001
    assert (await send_app(http, "not-a-token", text_body()))["errcode"] == 40014
    assert (await send_app(http, token, text_body()))["errcode"] == 0
    clock.advance(7199)
    assert (await send_app(http, token, text_body("still valid")))["errcode"] == 0
    clock.advance(1)
    assert (await send_app(http, token, text_body("now expired")))["errcode"] == 42001


async def test_expire_tokens_now(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    fake.expire_tokens()
    assert (await send_app(http, token, text_body()))["errcode"] == 42001
    assert (await send_app(http, await get_token(http), text_body()))["errcode"] == 0


async def test_token_only_sends_for_its_own_app(http: httpx.AsyncClient) -> None:
    other_token = await get_token(http, OTHER_APP)
    assert (await send_app(http, other_token, text_body()))["errcode"] == 301002
    assert (await send_app(http, other_token, text_body(agentid=OTHER_APP.agent_id)))["errcode"] == 0
    assert (await send_app(http, other_token, text_body(agentid="x")))["errcode"] == 40056


async def test_body_must_be_utf8_json_object(http: httpx.AsyncClient) -> None:
    token = await get_token(http)
    assert (await send_app(http, token, b"{not json"))["errcode"] == 40058
    assert (await send_app(http, token, b"[1, 2]"))["errcode"] == 40058
    assert (await send_app(http, token, "告警".encode("gbk")))["errcode"] == 40058


async def test_unicode_escapes_are_rejected_with_40033(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    escaped = json.dumps(text_body("磁盘告警"), ensure_ascii=True).encode()
    assert b"\\u" in escaped
    assert (await send_app(http, token, escaped))["errcode"] == 40033
    # A literal backslash-u in the content is not an escape: JSON carries it as "\\\\u".
    literal = "path C:\\u1234"
    assert (await send_app(http, token, text_body(literal)))["errcode"] == 0
    assert (await send_app(http, token, text_body("磁盘告警")))["errcode"] == 0
    assert [m.content for m in fake.messages()] == [literal, "磁盘告警"]


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (text_body(msgtype="telegram"), 40008),
        ({"touser": "alice", "agentid": DEFAULT_AGENT_ID, "text": {"content": "x"}}, 40008),
        (text_body(""), 44004),
        ({"touser": "alice", "msgtype": "text", "agentid": DEFAULT_AGENT_ID}, 44004),
        (
            {
                "touser": "alice",
                "msgtype": "markdown",
                "agentid": DEFAULT_AGENT_ID,
                "markdown": {"content": ""},
            },
            40058,
        ),
        ({"touser": "alice", "msgtype": "textcard", "agentid": DEFAULT_AGENT_ID}, 40058),
        (text_body(touser=""), 82001),
        ({**text_body(), "touser": ["alice"]}, 40058),
    ],
    ids=[
        "unknown-msgtype",
        "no-msgtype",
        "empty-text",
        "missing-text",
        "empty-markdown",
        "missing-card",
        "no-recipients",
        "touser-not-a-string",
    ],
)
async def test_message_checks(
    http: httpx.AsyncClient, fake: FakeWeCom, body: dict[str, Any], errcode: int
) -> None:
    answer = await send_app(http, await get_token(http), body)
    assert answer["errcode"] == errcode
    assert fake.messages() == []


@pytest.mark.parametrize(("msgtype", "over_errcode"), [("text", 45002), ("markdown", 40058)])
async def test_app_content_limit_is_2048_utf8_bytes(
    http: httpx.AsyncClient, fake: FakeWeCom, msgtype: str, over_errcode: int
) -> None:
    token = await get_token(http)
    fits = "告" * 682 + "ab"  # 682 * 3 + 2 = 2048 bytes
    assert len(fits.encode()) == 2048

    def body(content: str) -> dict[str, Any]:
        return {
            "touser": "alice",
            "msgtype": msgtype,
            "agentid": DEFAULT_AGENT_ID,
            msgtype: {"content": content},
        }

    assert (await send_app(http, token, body(fits)))["errcode"] == 0
    over = await send_app(http, token, body(fits + "c"))
    assert over["errcode"] == over_errcode
    assert [m.content for m in fake.messages()] == [fits]


# ---- message/send: recipients ---------------------------------------------


async def test_partly_invalid_recipients_are_listed_and_the_rest_delivered(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    answer = await send_app(
        http,
        await get_token(http),
        text_body(touser="alice|Mallory|BOB|carol", toparty="1|9", totag="7|8"),
    )
    assert answer["errcode"] == 0
    assert answer["invaliduser"] == "mallory"
    assert answer["invalidparty"] == "9"
    assert answer["invalidtag"] == "8"
    assert answer["unlicenseduser"] == "carol"
    assert answer["msgid"]
    [message] = fake.messages(MESSAGE_SEND)
    assert message.to_user == ("alice", "BOB")
    assert message.to_party == ("1",)
    assert message.to_tag == ("7",)
    assert message.msgid == answer["msgid"]
    assert message.agent_id == DEFAULT_AGENT_ID


async def test_all_recipients_invalid_is_81013(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    answer = await send_app(http, await get_token(http), text_body(touser="mallory|trudy", toparty="9"))
    assert answer["errcode"] == 81013
    assert fake.messages() == []


async def test_success_answer_has_every_field(http: httpx.AsyncClient) -> None:
    answer = await send_app(http, await get_token(http), text_body())
    assert set(answer) == {
        "errcode",
        "errmsg",
        "invaliduser",
        "invalidparty",
        "invalidtag",
        "unlicenseduser",
        "msgid",
    }
    assert (answer["errcode"], answer["errmsg"], answer["invaliduser"]) == (0, "ok", "")


# ---- message/send: duplicate check and rate limits ------------------------


async def test_duplicate_check_accepts_but_does_not_deliver_again(
    http: httpx.AsyncClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    token = await get_token(http)
    body = text_body(enable_duplicate_check=1, duplicate_check_interval=600)
    first = await send_app(http, token, body)
    second = await send_app(http, token, body)
    assert first["errcode"] == second["errcode"] == 0
    assert first["msgid"] == second["msgid"]
    assert len(fake.messages()) == 1
    assert [m.reason for m in fake.dropped()] == ["duplicate"]

    clock.advance(600)
    assert (await send_app(http, token, body))["errcode"] == 0
    assert len(fake.messages()) == 2


async def test_without_duplicate_check_identical_requests_are_delivered(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    token = await get_token(http)
    await send_app(http, token, text_body())
    await send_app(http, token, text_body())
    assert len(fake.messages()) == 2
    assert fake.dropped() == []


async def test_member_over_30_per_minute_is_silently_dropped(
    http: httpx.AsyncClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    token = await get_token(http)
    for i in range(30):
        assert (await send_app(http, token, text_body(f"m{i}")))["errcode"] == 0
    over = await send_app(http, token, text_body("m30", touser="alice|bob"))

    assert over["errcode"] == 0  # WeCom does not tell the sender
    assert over["invaliduser"] == ""
    assert fake.messages()[-1].to_user == ("bob",)
    [dropped] = fake.dropped()
    assert (dropped.to_user, dropped.reason, dropped.content) == (
        ("alice",),
        "member_minute_limit",
        "m30",
    )

    clock.advance(60)
    await send_app(http, token, text_body("a minute later"))
    assert fake.messages()[-1].to_user == ("alice",)


async def test_member_limit_is_per_app(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token, other = await get_token(http), await get_token(http, OTHER_APP)
    for i in range(30):
        await send_app(http, token, text_body(f"m{i}"))
    await send_app(http, other, text_body("other app", agentid=OTHER_APP.agent_id))
    assert fake.messages()[-1].agent_id == OTHER_APP.agent_id
    assert fake.dropped() == []


async def test_member_over_1000_per_hour_is_silently_dropped(
    http: httpx.AsyncClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    token = await get_token(http)
    for i in range(1000):  # 30 a minute: 34 minutes, all within the hour
        assert (await send_app(http, token, text_body(f"m{i}")))["errcode"] == 0
        if i % 30 == 29:
            clock.advance(60)
    assert len(fake.messages()) == 1000
    assert fake.dropped() == []

    assert (await send_app(http, token, text_body("one too many")))["errcode"] == 0
    assert [d.reason for d in fake.dropped()] == ["member_hour_limit"]
    clock.advance(3600)
    await send_app(http, token, text_body("next hour"))
    assert fake.messages()[-1].content == "next hour"


# ---- webhook/send (group robot) --------------------------------------------


async def test_robot_unknown_key_is_93000_and_disabled_robot_93004(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    body = {"msgtype": "text", "text": {"content": "hi"}}
    assert (await send_robot(http, body, key="wrong"))["errcode"] == 93000
    fake.disable_robot(DEFAULT_ROBOT_KEY)
    assert (await send_robot(http, body))["errcode"] == 93004
    assert fake.messages() == []


async def test_robot_markdown_limit_is_4096_bytes(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    fits = "警" * 1365 + "a"  # 4096 bytes
    assert (await send_robot(http, {"msgtype": "markdown", "markdown": {"content": fits}}))["errcode"] == 0
    over = await send_robot(http, {"msgtype": "markdown", "markdown": {"content": fits + "b"}})
    assert over["errcode"] == 40058
    assert over["errmsg"].startswith("markdown.content exceed max length 4096")
    assert [m.content for m in fake.messages(WEBHOOK_SEND)] == [fits]


async def test_robot_text_limit_and_mentions(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    fits = "x" * 2048
    body = {
        "msgtype": "text",
        "text": {
            "content": fits,
            "mentioned_list": ["alice", "@all"],
            "mentioned_mobile_list": ["13800001111"],
        },
    }
    assert (await send_robot(http, body))["errcode"] == 0
    assert (await send_robot(http, {"msgtype": "text", "text": {"content": fits + "y"}}))["errcode"] == 40058
    bad_mentions = {"msgtype": "text", "text": {"content": "hi", "mentioned_list": "alice"}}
    assert (await send_robot(http, bad_mentions))["errcode"] == 40058
    [message] = fake.messages(WEBHOOK_SEND)
    assert message.mentioned == ("alice", "@all")
    assert message.mentioned_mobiles == ("13800001111",)
    assert message.robot_key == DEFAULT_ROBOT_KEY


async def test_robot_checks_msgtype_and_content(http: httpx.AsyncClient) -> None:
    assert (await send_robot(http, {"msgtype": "sticker", "sticker": {}}))["errcode"] == 40008
    assert (await send_robot(http, {"msgtype": "markdown", "markdown": {"content": ""}}))["errcode"] == 44004
    assert (await send_robot(http, {"msgtype": "news"}))["errcode"] == 40058


async def test_robot_over_20_per_minute_is_45009(
    http: httpx.AsyncClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    for i in range(20):
        assert (await send_robot(http, {"msgtype": "text", "text": {"content": f"m{i}"}}))["errcode"] == 0
    assert (await send_robot(http, {"msgtype": "text", "text": {"content": "m20"}}))["errcode"] == 45009
    assert len(fake.messages()) == 20
    clock.advance(60)
    assert (await send_robot(http, {"msgtype": "text", "text": {"content": "later"}}))["errcode"] == 0


# ---- fault injection -------------------------------------------------------


async def test_queued_faults_apply_in_order_then_stop(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    fake.add_fault(GETTOKEN, Fault(errcode=-1, errmsg="system busy"))
    fake.add_fault(GETTOKEN, Fault(status=502))
    params = {"corpid": DEFAULT_CORP_ID, "corpsecret": DEFAULT_SECRET}
    busy = await http.get("/cgi-bin/gettoken", params=params)
    bad_gateway = await http.get("/cgi-bin/gettoken", params=params)
    normal = await http.get("/cgi-bin/gettoken", params=params)
    assert busy.json() == {"errcode": -1, "errmsg": "system busy"}
    assert bad_gateway.status_code == 502
    assert "<html>" in bad_gateway.text
    assert normal.json()["errcode"] == 0
    assert fake.gettoken_calls == 3


@pytest.mark.parametrize("errcode", [45009, 45033, 60020, 48002])
async def test_any_errcode_can_be_injected(http: httpx.AsyncClient, fake: FakeWeCom, errcode: int) -> None:
    token = await get_token(http)
    fake.add_fault(MESSAGE_SEND, Fault(errcode=errcode), times=2)
    assert (await send_app(http, token, text_body()))["errcode"] == errcode
    assert (await send_app(http, token, text_body()))["errcode"] == errcode
    assert (await send_app(http, token, text_body()))["errcode"] == 0


async def test_delay_fault_then_normal_answer(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    fake.add_fault(WEBHOOK_SEND, Fault(delay=0.3))
    started = time.monotonic()
    answer = await send_robot(http, {"msgtype": "text", "text": {"content": "slow"}})
    assert time.monotonic() - started >= 0.3
    assert answer["errcode"] == 0


async def test_probabilistic_faults(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    fake.set_fault_rate(WEBHOOK_SEND, Fault(errcode=-1), 1.0)
    body = {"msgtype": "text", "text": {"content": "x"}}
    assert [(await send_robot(http, body))["errcode"] for _ in range(3)] == [-1, -1, -1]
    fake.set_fault_rate(WEBHOOK_SEND, Fault(errcode=-1), 0.0)
    assert (await send_robot(http, body))["errcode"] == 0


async def test_probabilistic_faults_hit_about_the_given_share() -> None:
    fake = FakeWeCom(seed=7)
    fake.set_fault_rate(GETTOKEN, Fault(errcode=-1), 0.5)
    with fake.serve() as url:
        async with httpx.AsyncClient(base_url=url) as http:
            params = {"corpid": DEFAULT_CORP_ID, "corpsecret": DEFAULT_SECRET}
            codes = [
                (await http.get("/cgi-bin/gettoken", params=params)).json()["errcode"] for _ in range(100)
            ]
    assert 25 < codes.count(-1) < 75


def test_faults_reject_unknown_endpoints(fake: FakeWeCom) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        fake.add_fault("message/sned", Fault(errcode=-1))
    with pytest.raises(ValueError, match="probability"):
        fake.set_fault_rate(GETTOKEN, Fault(errcode=-1), 1.5)


# ---- inspection and control over HTTP --------------------------------------


async def test_http_control_and_inspection(http: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await get_token(http)
    await send_app(http, token, text_body("one", enable_duplicate_check=1))
    await send_app(http, token, text_body("one", enable_duplicate_check=1))
    await send_robot(http, {"msgtype": "markdown", "markdown": {"content": "**two**"}})

    messages = (await http.get("/_fake/messages")).json()
    assert [(m["endpoint"], m["msgtype"], m["content"]) for m in messages] == [
        (MESSAGE_SEND, "text", "one"),
        (WEBHOOK_SEND, "markdown", "**two**"),
    ]
    assert messages[0]["to_user"] == ["alice"] and messages[0]["agent_id"] == DEFAULT_AGENT_ID
    assert messages[1]["robot_key"] == DEFAULT_ROBOT_KEY
    assert messages[0]["timestamp"] > 0
    only_robot = (await http.get("/_fake/messages", params={"endpoint": WEBHOOK_SEND})).json()
    assert len(only_robot) == 1
    assert [d["reason"] for d in (await http.get("/_fake/dropped")).json()] == ["duplicate"]
    stats = (await http.get("/_fake/stats")).json()
    assert stats["gettoken_calls"] == 1
    assert stats["requests"] == {
        AGENT_GET: 0,
        GETTOKEN: 1,
        MEDIA_UPLOAD: 0,
        MESSAGE_SEND: 2,
        UPDATE_TEMPLATE_CARD: 0,
        WEBHOOK_SEND: 1,
        USER_GET: 0,
        TAG_GET: 0,
        MESSAGE_RECALL: 0,
        APPCHAT_CREATE: 0,
        APPCHAT_GET: 0,
        APPCHAT_SEND: 0,
    }
    assert (stats["delivered"], stats["dropped"]) == (2, 1)

    fault = {"endpoint": MESSAGE_SEND, "errcode": 45033, "times": 1}
    assert (await http.post("/_fake/faults", json=fault)).json() == {"ok": True}
    assert (await send_app(http, token, text_body("x")))["errcode"] == 45033
    await http.post("/_fake/faults", json={"endpoint": MESSAGE_SEND, "status": 502, "probability": 1})
    assert (
        await http.post("/cgi-bin/message/send", params={"access_token": token}, json=text_body())
    ).status_code == 502
    await http.delete("/_fake/faults")
    assert (await send_app(http, token, text_body("y")))["errcode"] == 0
    assert (await http.post("/_fake/faults", json={"endpoint": "nope"})).status_code == 400

    await http.post("/_fake/expire-tokens")
    assert (await send_app(http, token, text_body("z")))["errcode"] == 42001

    await http.post("/_fake/reset")
    assert (await http.get("/_fake/messages")).json() == []
    assert (await http.get("/_fake/stats")).json()["gettoken_calls"] == 0


async def test_reset_forgets_messages_but_keeps_tokens_valid(
    http: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    token = await get_token(http)
    await send_app(http, token, text_body("before"))
    fake.add_fault(MESSAGE_SEND, Fault(errcode=-1))
    fake.reset()
    assert fake.messages() == [] and fake.gettoken_calls == 0
    assert (await send_app(http, token, text_body("after")))["errcode"] == 0
    assert [m.content for m in fake.messages()] == ["after"]


# ---- the command line and the server thread --------------------------------


def test_cli_builds_one_app_per_triple() -> None:
    args = build_parser().parse_args(
        [
            "--corp-id",
            "c1",
            "--secret",
            "s1",
            "--agent-id",
            "1",
            "--corp-id",
            "c1",
            "--secret",
            "s2",
            "--agent-id",
            "2",
        ]
    )
    assert apps_from_args(args) == [FakeApp("c1", "s1", 1), FakeApp("c1", "s2", 2)]
    assert apps_from_args(build_parser().parse_args([])) == [FakeApp()]
    with pytest.raises(SystemExit):
        apps_from_args(build_parser().parse_args(["--corp-id", "c1"]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runs_as_a_module() -> None:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "alertbridge.testing.fake_wecom",
        "--port",
        str(port),
        "--corp-id",
        "ww-cli",
        "--secret",
        "cli-secret",
        "--agent-id",
        "42",
        "--token-lifetime",
        "60",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/cgi-bin/gettoken",
                    params={"corpid": "ww-cli", "corpsecret": "cli-secret"},
                ).json()
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert answer["errcode"] == 0
        assert answer["expires_in"] == 60
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_server_thread_serves_and_stops() -> None:
    fake = FakeWeCom()
    server = ServerThread(fake.app)
    url = server.start()
    try:
        assert url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{url}/_fake/stats").status_code == 200
    finally:
        server.stop()
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_fake/stats")


def test_swappable_app_without_target_answers_503(wecom_slot: tuple[SwappableApp, str]) -> None:
    assert httpx.get(f"{wecom_slot[1]}/_fake/stats").status_code == 503


def test_server_thread_reports_a_port_in_use() -> None:
    with serve_in_thread(FakeWeCom().app) as url:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="failed to start"):
            ServerThread(FakeWeCom().app, port=port).start()
