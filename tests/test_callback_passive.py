"""Passive replies on a real server: commands answered inside the callback's
HTTP response (even when WeCom refuses our sends), "working on it" and a later
message when Alertmanager is slow, retries answered with the saved reply on
any replica, card clicks answered with a passive button update, menu clicks
and other events."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from alertbridge.testing.fake_wecom import GETTOKEN, MESSAGE_SEND, FakeApp, FakeWeCom, Fault
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.server import ServerThread
from tests.callback_bridge import Bridge, bridge_config, start_bridge
from tests.harness import wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

WORKING = "正在处理，结果稍后发送。"


class SlowAlertmanager:
    """Alertmanager's silences API that takes ``delay`` seconds to create one
    (the stand-in for an overloaded Alertmanager); counts what it created."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.created: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/api/v2/silences", self._create, methods=["POST"])])

    async def _create(self, request: Request) -> JSONResponse:
        body = await request.json()
        await asyncio.sleep(self.delay)
        with self._lock:
            self.created.append(body)
            number = len(self.created)
        return JSONResponse({"silenceID": f"silence-{number}"})


@pytest.fixture
def alertmanager() -> Iterator[tuple[SlowAlertmanager, str]]:
    standin = SlowAlertmanager()
    with ServerThread(standin.app) as server:
        yield standin, server.base_url


@pytest.fixture
def bridge(
    tmp_path: Path,
    serve_wecom: Callable[[FakeWeCom], str],
    serve_app: Callable[..., str],
    alertmanager: tuple[SlowAlertmanager, str],
) -> Bridge:
    return start_bridge(
        tmp_path,
        serve_wecom,
        serve_app,
        silencer_url=alertmanager[1],
        app_settings={"callback_reply_budget": "1s", "menu_commands": {"我的告警": "alerts"}},
    )


def test_help_is_answered_in_the_response_even_when_sending_is_refused(bridge: Bridge) -> None:
    # 60020: this server's IP is not among the app's trusted IPs; no send works.
    bridge.wecom.set_fault_rate(
        MESSAGE_SEND, Fault(errcode=60020, errmsg="not allow to access from your ip"), 1.0
    )
    with bridge.callback() as wecom:
        started = time.monotonic()
        response = wecom.send_text("zhangsan", "帮助")
        elapsed = time.monotonic() - started
        wecom.send_text("zhangsan", "告警")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    assert elapsed < 2.5, "well inside WeCom's 5 s"
    [help_reply, listing] = wecom.passive
    assert help_reply.msg_type == "text" and "可用命令" in help_reply.content
    assert "没有" in listing.content
    time.sleep(0.3)
    assert bridge.wecom.request_count(MESSAGE_SEND) == 0
    assert bridge.wecom.gettoken_calls == 0, "no access token needed"


def test_a_slow_silencer_gets_working_on_it_then_the_result_by_message(
    bridge: Bridge, alertmanager: tuple[SlowAlertmanager, str]
) -> None:
    standin, _ = alertmanager
    bridge.post_alert()
    wait_until(lambda: bridge.wecom.messages(MESSAGE_SEND))
    standin.delay = 2.5  # beyond the 1 s budget
    with bridge.callback() as wecom:
        started = time.monotonic()
        first = wecom.send_text("lisi", "静默 1 2h")
        assert 1.0 <= time.monotonic() - started < 3.5  # the budget, then the answer
        assert [r.content for r in wecom.passive] == [WORKING]
        # WeCom's retry while the silence is still being made: the same answer, no second silence.
        assert wecom.resend().status_code == 200 and first.status_code == 200
        assert wecom.passive[1].plaintext == wecom.passive[0].plaintext
        result = bridge.wait_reply("lisi", 3)
    assert result.startswith("已静默 #1"), result
    assert bridge.active_replies_to("lisi") == [result]
    assert len(standin.created) == 1
    assert bridge.audit() == [("lisi", "silence", "ok")]


def test_a_fast_silencer_is_answered_passively(
    bridge: Bridge, alertmanager: tuple[SlowAlertmanager, str]
) -> None:
    bridge.post_alert()
    wait_until(lambda: bridge.wecom.messages(MESSAGE_SEND))
    with bridge.callback() as wecom:
        wecom.send_text("lisi", "silence 1 2h")
    [reply] = wecom.passive
    assert reply.content.startswith("已静默 #1")
    time.sleep(0.3)
    assert bridge.active_replies_to("lisi") == []
    assert len(alertmanager[0].created) == 1


def test_a_card_click_is_answered_with_a_passive_button_update(bridge: Bridge) -> None:
    bridge.post_alert("cards")
    wait_until(lambda: bridge.wecom.messages(MESSAGE_SEND))
    task_id = bridge.wecom.messages(MESSAGE_SEND)[0].task_id
    with bridge.callback() as wecom:
        wecom.click_button("zhaoliu", task_id, "ack:1")
        wecom.resend()
    [update, replayed] = wecom.passive
    assert (update.msg_type, update.content) == ("update_button", "已确认 · zhaoliu")
    assert b"<Button><ReplaceName>" in update.plaintext
    assert replayed.plaintext == update.plaintext
    time.sleep(0.3)
    assert bridge.wecom.card_updates() == [], "no update_template_card call"
    assert bridge.active_replies_to("zhaoliu") == []
    assert bridge.audit() == [("zhaoliu", "button:ack", "ok")]


def test_the_other_recipients_cards_are_greyed_out_by_update_template_card(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    """The passive update reaches only the member who clicked; the card's
    other recipients get theirs through update_template_card."""
    bridge = start_bridge(tmp_path, serve_wecom, serve_app, card_users=("zhaoliu", "zhouba"))
    bridge.post_alert("cards")
    wait_until(lambda: bridge.wecom.messages(MESSAGE_SEND))
    task_id = bridge.wecom.messages(MESSAGE_SEND)[0].task_id
    with bridge.callback() as wecom:
        wecom.click_button("zhouba", task_id, "ack:1")
    assert [(r.to_user, r.content) for r in wecom.passive] == [("zhouba", "已确认 · zhouba")]
    wait_until(lambda: bridge.wecom.card_updates(), what="the others' card update")
    [update] = bridge.wecom.card_updates()
    assert (update.task_id, update.replace_name, update.body["userids"]) == (
        task_id,
        "已确认 · zhouba",
        ["zhaoliu"],
    )


def test_a_slow_card_click_updates_the_card_later(
    bridge: Bridge, alertmanager: tuple[SlowAlertmanager, str]
) -> None:
    alertmanager[0].delay = 1.5
    bridge.post_alert("cards")
    wait_until(lambda: bridge.wecom.messages(MESSAGE_SEND))
    task_id = bridge.wecom.messages(MESSAGE_SEND)[0].task_id
    with bridge.callback() as wecom:
        response = wecom.click_button("zhaoliu", task_id, "silence:1:3600")
    assert response.status_code == 200 and response.content == b""
    wait_until(lambda: bridge.wecom.card_updates(), what="the later card update")
    assert (bridge.wecom.card_updates()[0].replace_name or "").startswith("已静默")


def test_menu_click_runs_the_mapped_command_and_events_are_counted(bridge: Bridge) -> None:
    with bridge.callback() as wecom:
        wecom.click_menu("zhangsan", "我的告警")
        wecom.send_xml(wecom.event_xml("lisi", "subscribe", int(time.time())))
        wecom.send_xml(wecom.event_xml("lisi", "LOCATION", int(time.time())))
        wecom.send_xml(wecom.event_xml("lisi", "made_up_event", int(time.time())))
    [listing, welcome] = wecom.passive
    assert listing.to_user == "zhangsan" and "没有" in listing.content
    assert welcome.to_user == "lisi" and "可用命令" in welcome.content
    metrics = httpx.get(f"{bridge.base_url}/metrics", timeout=5).text.splitlines()
    for event in ("click", "subscribe", "location", "other"):
        assert f'alertbridge_callback_events_total{{event="{event}"}} 1.0' in metrics
    assert not any("made_up_event" in line for line in metrics)


def test_a_retry_to_another_replica_gets_the_same_reply_and_acts_once(
    postgres: PostgresServer,
    serve_wecom: Callable[[FakeWeCom], str],
    serve_app: Callable[..., str],
    alertmanager: tuple[SlowAlertmanager, str],
) -> None:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    config = bridge_config(serve_wecom(wecom), postgres.create_database(), silencer_url=alertmanager[1])
    one = Bridge(serve_app(config), wecom, Path("unused"))
    two = Bridge(serve_app(config), wecom, Path("unused"))
    one.post_alert()
    wait_until(lambda: wecom.messages(MESSAGE_SEND))
    with one.callback() as first, two.callback() as second:
        first.send_text("lisi", "silence 1 2h")
        assert first.last_request is not None
        retried = first.last_request
        second.send(
            httpx.Request(
                retried.method,
                str(retried.url).replace(one.base_url, two.base_url),
                headers=retried.headers,
                content=retried.content,
            )
        )
    assert first.passive[0].content.startswith("已静默 #1")
    assert second.passive[0].plaintext == first.passive[0].plaintext
    time.sleep(0.3)
    assert len(alertmanager[0].created) == 1
    assert one.active_replies_to("lisi") == []
    assert wecom.request_count(GETTOKEN) <= 2  # only the alert's sends needed tokens
