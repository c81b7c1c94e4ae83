"""``/wecom/callback/{app}`` on a real server: verification, rejection, dedup,
and commands by reply, against the fake WeCom."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from alertbridge.app import create_app
from alertbridge.config import parse_config
from alertbridge.testing.fake_wecom import MESSAGE_SEND, UPDATE_TEMPLATE_CARD, FakeWeCom, Fault
from alertbridge.testing.server import ServerThread
from alertbridge.testing.wecom_callback import CallbackClient
from tests.callback_bridge import AES_KEY, FIRING, TOKEN, Bridge, start_bridge
from tests.harness import wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID

DATA = Path(__file__).parent / "data"
VECTORS = {
    v["id"]: v
    for v in json.loads((DATA / "wecom_crypto_vectors.json").read_text(encoding="utf-8"))["vectors"]
}


@pytest.fixture
def bridge(tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]) -> Bridge:
    return start_bridge(tmp_path, serve_wecom, serve_app)


def test_url_verification_answers_the_bare_plaintext(bridge: Bridge) -> None:
    with bridge.callback() as wecom:
        response = wecom.verify_url("1616140317555161061")
    assert response.status_code == 200
    assert response.content == b"1616140317555161061"


def test_wecom_documented_example_verifies(tmp_path: Path) -> None:
    vector = VECTORS["doc_verify_url"]
    config = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'ab.db'}"},
            "wecom": {
                "apps": {
                    "doc": {
                        "corp_id": vector["receive_id"],
                        "agent_id": 218,
                        "secret": "s",
                        "token": vector["token"],
                        "encoding_aes_key": vector["encoding_aes_key"],
                        "callback_max_skew_seconds": 0,
                    }
                }
            },
        },
        {},
        "t",
    )
    with ServerThread(create_app(config)) as server:
        url = (
            f"{server.base_url}/wecom/callback/doc?msg_signature={vector['msg_signature']}"
            f"&timestamp={vector['timestamp']}&nonce={vector['nonce']}"
            f"&echostr={vector['echostr_url_encoded_as_in_query']}"
        )
        response = httpx.get(url, timeout=5)
    assert response.status_code == 200
    assert response.text == vector["expected_plaintext"]


def test_forged_stale_wrong_corp_and_hostile_callbacks_are_rejected(bridge: Bridge) -> None:
    with bridge.callback() as wecom:
        good = wecom.build_text("zhangsan", "help")
        forged = dict(httpx.QueryParams(good.url.query))
        forged["msg_signature"] = "0" * 40
        assert wecom.post_raw(forged, good.content).status_code == 403

        stale = CallbackClient(
            bridge.base_url,
            "/wecom/callback/ops",
            TOKEN,
            AES_KEY,
            CORP_ID,
            AGENT_ID,
            clock=lambda: time.time() - 3600,
        )
        with stale:
            assert stale.send_text("zhangsan", "help").status_code == 403

        other_corp = CallbackClient(
            bridge.base_url, "/wecom/callback/ops", TOKEN, AES_KEY, "wwSomeoneElse", AGENT_ID
        )
        with other_corp:
            assert other_corp.send_text("zhangsan", "help").status_code == 403

        wrong_token = CallbackClient(
            bridge.base_url, "/wecom/callback/ops", "otherToken", AES_KEY, CORP_ID, AGENT_ID
        )
        with wrong_token:
            assert wrong_token.send_text("zhangsan", "help").status_code == 403

        params = dict(httpx.QueryParams(good.url.query))
        xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>'
        assert wecom.post_raw(params, xxe).status_code == 403
        bomb = b'<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
        assert wecom.post_raw(params, bomb).status_code == 403
        assert wecom.post_raw(params, b"not xml").status_code == 403
        assert wecom.post_raw(params, b"<xml>" + b"x" * 100_000 + b"</xml>").status_code == 413
        response = wecom.post_raw({}, good.content)
        assert response.status_code == 403 and response.text == "invalid callback\n"
    assert bridge.wecom.messages() == []
    assert httpx.get(f"{bridge.base_url}/wecom/callback/nocallback", timeout=5).status_code == 404
    assert httpx.get(f"{bridge.base_url}/wecom/callback/missing", timeout=5).status_code == 404


def test_url_verification_applies_the_timestamp_window(bridge: Bridge) -> None:
    with bridge.callback() as wecom:
        stale = wecom.build_verify_url("echo-1", timestamp=str(int(time.time()) - 3600))
        assert wecom.send(stale).status_code == 403
        fresh = wecom.build_verify_url("echo-2", timestamp=str(int(time.time()) - 60))
        assert wecom.send(fresh).content == b"echo-2"


def test_rejections_log_the_key_to_check_and_wecoms_error_code(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    other_key = "Z" * 42 + "A"
    clients = {
        "token": CallbackClient(
            bridge.base_url, "/wecom/callback/ops", "otherToken", AES_KEY, CORP_ID, AGENT_ID
        ),
        "encoding_aes_key": CallbackClient(
            bridge.base_url, "/wecom/callback/ops", TOKEN, other_key, CORP_ID, AGENT_ID
        ),
        "corp_id": CallbackClient(bridge.base_url, "/wecom/callback/ops", TOKEN, AES_KEY, "wwElse", AGENT_ID),
    }
    lines = {}
    for key, client in clients.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alertbridge"), client:
            assert client.send_text("zhangsan", "help").status_code == 403
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("callback_rejected")]
        lines[key] = line
    assert "wecom_error=-40001 check=wecom.apps.ops.token " in lines["token"]
    assert "wecom_error=-40007 check=wecom.apps.ops.encoding_aes_key " in lines["encoding_aes_key"]
    assert "wecom_error=-40005 check=wecom.apps.ops.corp_id " in lines["corp_id"]
    # Key names only, never the values.
    assert not any(secret in line for line in lines.values() for secret in (TOKEN, AES_KEY, other_key))


def test_ack_by_reply_and_a_retried_callback_acts_once(bridge: Bridge) -> None:
    bridge.post_alert()
    wait_until(lambda: len(bridge.wecom.messages(MESSAGE_SEND)) == 1)
    alert_message = bridge.wecom.messages(MESSAGE_SEND)[0].content or ""
    assert "#1" in alert_message

    with bridge.callback() as wecom:
        first = wecom.send_text("zhangsan", "确认 1")
        assert first.status_code == 200
        # WeCom heard nothing within 5 s and sends the very same request again:
        # it gets the same reply (sealed afresh), and nothing is done twice.
        again = wecom.resend()
        assert again.status_code == 200 and again.content != first.content
    [reply, replayed] = wecom.passive
    assert "已确认 #1" in reply.content
    assert replayed.plaintext == reply.plaintext
    time.sleep(0.5)
    assert bridge.active_replies_to("zhangsan") == []  # answered in the response only
    assert bridge.audit() == [("zhangsan", "ack", "ok")]

    # An identical repeat of the acknowledged group is not sent at all; a
    # change is, and shows who acknowledged it.
    def alert_messages() -> list[str]:
        return [
            m.content or "" for m in bridge.wecom.messages(MESSAGE_SEND) if m.to_user == ("zhangsan", "lisi")
        ]

    repeat = {**FIRING, "commonAnnotations": {"note": "repeat"}}
    bridge.post_alert(payload=repeat)
    wait_until(lambda: bridge.pending_deliveries() == 0)
    extra = {
        **FIRING["alerts"][0],
        "fingerprint": "ffff000011112222",
        "labels": {**FIRING["alerts"][0]["labels"], "instance": "api-3:9100"},
    }
    bridge.post_alert(payload={**FIRING, "alerts": [*FIRING["alerts"], extra]})
    wait_until(lambda: len(alert_messages()) == 2)
    time.sleep(0.3)
    assert len(alert_messages()) == 2  # the repeat was held back
    later = alert_messages()[-1]
    assert "#1" in later and "api-3:9100" in later
    assert "已确认 · zhangsan" in later


def test_ack_without_number_takes_the_latest_alert(bridge: Bridge) -> None:
    bridge.post_alert()
    wait_until(lambda: len(bridge.wecom.messages(MESSAGE_SEND)) == 1)
    with bridge.callback() as wecom:
        wecom.send_text("lisi", "  ACK ")
        assert "已确认 #1" in bridge.wait_reply("lisi")


def test_refusals_bad_input_help_and_unsupported(bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    bridge.post_alert()
    wait_until(lambda: len(bridge.wecom.messages(MESSAGE_SEND)) == 1)
    with bridge.callback() as wecom:
        wecom.send_text("wangwu", "ack 1")
        assert "无权" in bridge.wait_reply("wangwu")
        wecom.send_text("zhangsan", "静默 1 forever")
        bad = bridge.wait_reply("zhangsan")
        assert "\n" not in bad and "静默" in bad
        wecom.send_text("zhangsan", "help")
        assert "确认" in bridge.wait_reply("zhangsan", 2)
        wecom.send_xml(
            b"<xml><ToUserName>x</ToUserName><FromUserName>zhangsan</FromUserName><CreateTime>1</CreateTime>"
            b"<MsgType>location</MsgType><Location_X>23.1</Location_X><MsgId>99</MsgId>"
            b"<AgentID>1000002</AgentID></xml>"
        )
        assert "不支持" in bridge.wait_reply("zhangsan", 3)
        wecom.send_text("zhangsan", "silence 1 2h")
        assert "无权" in bridge.wait_reply("zhangsan", 4)  # allow_silence lists only lisi
        wecom.send_text("zhangsan", "ack 999")
        assert "#999" in bridge.wait_reply("zhangsan", 5)
        # Alertmanager is down: a clear answer, and nothing recorded as done.
        wecom.send_text("lisi", "silence 1 2h")
        failed = bridge.wait_reply("lisi")
        # One language: the receiver's, the English detail only in the log.
        assert failed == "静默未创建：Alertmanager 无法连接，请稍后重试。"
        wecom.send_text("lisi", "静默列表")
        assert "没有生效中的静默" in bridge.wait_reply("lisi", 2)
    results = [row[2] for row in bridge.audit()]
    assert "refused" in results
    logged = [r.getMessage() for r in caplog.records]
    assert any(
        "command_executed user=lisi action=silence ref=1 result=failed reason=silencer_unreachable" in line
        for line in logged
    )
    assert any("command_silencer_failed" in line and "unreachable (" in line for line in logged)


def test_enter_agent_greets_once_and_menu_click_runs_a_command(bridge: Bridge) -> None:
    with bridge.callback() as wecom:
        wecom.enter_agent("zhangsan")
        greeting = bridge.wait_reply("zhangsan")
        assert "可用命令" in greeting
        # Opened again a second later (in the same second it would be a retry).
        wecom.send(wecom.build_enter_agent("zhangsan", int(time.time()) + 1))
        wecom.click_menu("zhangsan", "alerts")
        listing = bridge.wait_reply("zhangsan", 2)
    assert "没有" in listing
    time.sleep(0.3)
    assert len(bridge.replies_to("zhangsan")) == 2


def test_a_resolved_group_turns_its_card_to_resolved_else_gets_a_message(bridge: Bridge) -> None:
    resolved = json.loads((DATA / "alertmanager" / "resolved.json").read_text(encoding="utf-8"))

    def to_zhaoliu() -> list[str]:
        return [m.msgtype for m in bridge.wecom.messages(MESSAGE_SEND) if m.to_user == ("zhaoliu",)]

    bridge.post_alert("cards")
    wait_until(lambda: to_zhaoliu() == ["template_card"])
    bridge.post_alert("cards", resolved)
    wait_until(lambda: len(bridge.wecom.card_updates()) == 1)
    assert bridge.wecom.card_updates()[0].replace_name == "已恢复"
    wait_until(lambda: bridge.pending_deliveries() == 0)
    assert to_zhaoliu() == ["template_card"]  # no separate resolved message

    # It fires again (a new episode: new start times), and this time the card
    # can no longer be updated.
    refired = {**FIRING, "alerts": [{**a, "startsAt": "2026-11-29T13:00:00Z"} for a in FIRING["alerts"]]}
    bridge.post_alert("cards", refired)
    wait_until(lambda: to_zhaoliu() == ["template_card", "template_card"])
    bridge.wecom.add_fault(UPDATE_TEMPLATE_CARD, Fault(errcode=60140, errmsg="invalid response_code"))
    resolved_again = {
        **resolved,
        "alerts": [{**a, "endsAt": "2026-11-29T13:30:00Z"} for a in resolved["alerts"]],
    }
    bridge.post_alert("cards", resolved_again)
    wait_until(lambda: to_zhaoliu() == ["template_card", "template_card", "markdown"])
    resolution = [m.content or "" for m in bridge.wecom.messages(MESSAGE_SEND) if m.to_user == ("zhaoliu",)][
        -1
    ]
    assert "已恢复" in resolution and "#1" in resolution  # the same group keeps its reference


def test_active_replies_count_against_the_members_wecom_budget_shared_with_alerts(bridge: Bridge) -> None:
    """Item 7 of issue 10: 30 replies a minute used up a member's WeCom limit
    outside the budget, and WeCom silently dropped the next alert. Replies
    that go out through message/send — here refusals of card clicks, which
    cannot be answered passively — still count against that limit."""
    bridge.post_alert("cards")
    wait_until(lambda: bridge.wecom.messages(MESSAGE_SEND))
    task_id = bridge.wecom.messages(MESSAGE_SEND)[0].task_id
    start = int(time.time())
    with bridge.callback() as wecom:
        for i in range(31):
            # zhangsan is no recipient of the card: each click is refused.
            click = wecom.build_click_button("zhangsan", task_id, "ack:1", create_time=start + i)
            response = wecom.send(click)
            assert response.status_code == 200 and response.content == b""
        bridge.wait_reply("zhangsan", 30)
        wait_until(
            lambda: (
                'alertbridge_command_replies_total{outcome="rate_limited"} 1.0'
                in httpx.get(f"{bridge.base_url}/metrics", timeout=5).text.splitlines()
            ),
            what="the reply not sent",
        )
    assert len(bridge.active_replies_to("zhangsan")) == 30
    assert all("无权" in reply for reply in bridge.active_replies_to("zhangsan"))
    bridge.post_alert()  # to zhangsan and lisi: zhangsan's minute is spent
    time.sleep(1.0)
    assert bridge.pending_deliveries() == 1  # held until a slot frees, not sent to be dropped
    assert [m.msgtype for m in bridge.wecom.messages(MESSAGE_SEND) if m.msgtype != "text"] == [
        "template_card"
    ]
    assert bridge.wecom.dropped() == []
