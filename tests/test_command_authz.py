"""Who may act on an alert (issue 10 item 1): refs are guessable numbers, so a
command is allowed only to people known to be meant — the named recipients of
an app message, or an operator's allow-list of users, ``party:`` and ``tag:``
entries resolved through WeCom's contact API (the fake, over HTTP).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from alertbridge.app import create_app
from alertbridge.commands.authz import ContactUnavailable
from alertbridge.config import parse_config
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.contacts import ContactDirectory
from alertbridge.testing.fake_wecom import (
    DEFAULT_ROBOT_KEY,
    MESSAGE_SEND,
    USER_GET,
    WEBHOOK_SEND,
    FakeApp,
    FakeWeCom,
    ManualClock,
)
from alertbridge.testing.server import ServerThread
from tests.callback_bridge import FIRING, Bridge, callback_app
from tests.harness import AlertmanagerProcess, free_port, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET


class Rig(Bridge):
    """The callback bridge, plus where the fake WeCom and the silencer are."""

    def __init__(self, base_url: str, wecom: FakeWeCom, wecom_url: str, db: Path, silencer_url: str) -> None:
        super().__init__(base_url, wecom, db)
        self.wecom_url = wecom_url
        self.silencer_url = silencer_url

    def post_named(self, receiver: str, alertname: str) -> None:
        """A notification of one alert named ``alertname`` (its own group and ref)."""
        labels = {**FIRING["alerts"][0]["labels"], "alertname": alertname}
        alert = {
            **FIRING["alerts"][0],
            "labels": labels,
            "fingerprint": hashlib.sha256(alertname.encode()).hexdigest()[:16],
        }
        self.post_alert(
            receiver,
            {
                **FIRING,
                "alerts": [alert],
                "groupKey": f'{{}}:{{alertname="{alertname}"}}',
                "groupLabels": {"alertname": alertname},
                "commonLabels": labels,
            },
        )

    def audit_rows(self) -> list[tuple[str, str, str, str]]:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT user_id, action, result, detail FROM audit ORDER BY id").fetchall()


def _config(tmp_path: Path, wecom_url: str, silencer_url: str) -> dict[str, object]:
    return {
        "server": {"language": "zh"},
        "store": {"url": f"sqlite:///{tmp_path / 'ab.db'}"},
        "wecom": {
            "api_base": wecom_url,
            "apps": {"ops": callback_app()},
        },
        "silencers": {"am": {"kind": "alertmanager", "url": silencer_url, "timeout": "3s"}},
        "receivers": {
            # A group robot: who is in the group chat is unknown.
            "room": {"channel": "robot", "robot_key": DEFAULT_ROBOT_KEY, "msgtype": "markdown"},
            "room_en": {
                "channel": "robot",
                "robot_key": DEFAULT_ROBOT_KEY,
                "msgtype": "markdown",
                "language": "en",
            },
            "oncall": {
                "channel": "app",
                "app": "ops",
                "to_user": ["zhangsan", "lisi"],
                "msgtype": "markdown",
            },
            "oncall_en": {
                "channel": "app",
                "app": "ops",
                "to_user": ["zhaoliu"],
                "msgtype": "markdown",
                "language": "en",
            },
            "team": {
                "channel": "robot",
                "robot_key": DEFAULT_ROBOT_KEY,
                "msgtype": "markdown",
                "allow_ack": ["lisi", "party:7", "tag:3"],
            },
            "team2": {
                "channel": "robot",
                "robot_key": DEFAULT_ROBOT_KEY,
                "msgtype": "markdown",
                "allow_ack": ["party:8", "tag:4"],
            },
        },
    }


@pytest.fixture
def rig(tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]) -> Rig:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    wecom_url = serve_wecom(wecom)
    silencer_url = f"http://127.0.0.1:{free_port()}"
    config = parse_config(_config(tmp_path, wecom_url, silencer_url), {}, "test.toml")
    return Rig(serve_app(config), wecom, wecom_url, tmp_path / "ab.db", silencer_url)


def test_a_stranger_cannot_silence_a_robot_alert_but_the_app_recipient_can(
    tmp_path: Path, start_alertmanager: Callable[..., AlertmanagerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """The attack of issue 10: a member who received nothing guesses a robot
    alert's ref and silences it. Against the real Alertmanager."""
    caplog.set_level(logging.INFO)
    alertmanager = start_alertmanager()
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    am = httpx.Client(base_url=alertmanager.base_url, timeout=5)
    try:
        with wecom.serve() as wecom_url:
            config = parse_config(_config(tmp_path, wecom_url, alertmanager.base_url), {}, "test.toml")
            with ServerThread(create_app(config)) as server:
                rig = Rig(server.base_url, wecom, wecom_url, tmp_path / "ab.db", alertmanager.base_url)
                rig.post_named("room", "RobotOnly")
                wait_until(lambda: wecom.messages(WEBHOOK_SEND), what="the robot message")
                assert "#1" in (wecom.messages(WEBHOOK_SEND)[0].content or "")
                rig.post_named("room_en", "RobotEnglish")
                wait_until(lambda: len(wecom.messages(WEBHOOK_SEND)) == 2, what="the second robot message")
                rig.post_named("oncall", "AppAlert")
                wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the app message")
                assert "#3" in (wecom.messages(MESSAGE_SEND)[0].content or "")

                with rig.callback() as user:
                    user.send_text("wangwu", "silence #1 1h")
                    refusal = rig.wait_reply("wangwu")
                    user.send_text("wangwu", "ack 2")
                    refusal_en = rig.wait_reply("wangwu", 2)
                    user.send_text("zhangsan", "静默 1 1h")  # a recipient elsewhere is a stranger here
                    other = rig.wait_reply("zhangsan")
                    user.send_text("zhangsan", "静默 3 1h")
                    done = rig.wait_reply("zhangsan", 2)
                    # `silences` shows only silences on refs the user may act on.
                    user.send_text("wangwu", "静默列表")
                    strangers_list = rig.wait_reply("wangwu", 3)
                    user.send_text("lisi", "静默列表")
                    recipients_list = rig.wait_reply("lisi")

                silences = am.get("/api/v2/silences").json()
    finally:
        am.close()

    assert refusal.startswith("无权静默告警 #1")
    assert "群机器人" in refusal and "receivers.room.allow_silence" in refusal
    assert "无权" in other
    # The receiver's language, and the key to set.
    assert (
        refusal_en.startswith("Not allowed to ack alert #2") and "receivers.room_en.allow_ack" in refusal_en
    )
    assert "已静默 #3" in done
    assert [s["createdBy"] for s in silences] == ["zhangsan"]
    assert strangers_list == "没有生效中的静默。"
    assert "#3" in recipients_list and silences[0]["id"] in recipients_list
    assert {m["value"] for m in silences[0]["matchers"]} >= {"AppAlert"}

    audit = rig.audit_rows()
    assert audit[0][:3] == ("wangwu", "silence", "refused")
    assert audit[0][3].startswith("audience_unknown")
    assert ("zhangsan", "silence", "ok") in [row[:3] for row in audit]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("command_executed")]
    assert any("user=wangwu" in line and "result=refused reason=audience_unknown" in line for line in logged)


def test_party_and_tag_entries_resolve_through_wecom(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    contacts = {
        "user_departments": {"zhaoliu": [7], "qianqi": [9], "wangwu": [1], "zhouji": [8]},
        "tag_members": {"3": {"users": ["SunBa"], "parties": [9]}, "4": {"users": ["zhouji"]}},
    }
    assert httpx.post(f"{rig.wecom_url}/_fake/contacts", json=contacts, timeout=5).json() == {"ok": True}
    rig.post_named("team", "TeamAlert")
    rig.post_named("team2", "TeamTwo")
    wait_until(lambda: len(rig.wecom.messages(WEBHOOK_SEND)) == 2, what="the robot messages")

    with rig.callback() as user:
        for member, why in [
            ("lisi", "user id"),
            ("zhaoliu", "party:7"),
            ("sunba", "tag:3 user"),
            ("qianqi", "tag:3 party"),
        ]:
            user.send_text(member, "ack 1")
            assert "已确认 #1" in rig.wait_reply(member), why
        user.send_text("wangwu", "ack 1")
        refused = rig.wait_reply("wangwu")
        assert refused.startswith("无权确认告警 #1") and "receivers.team.allow_ack" in refused
        assert "party:7" in refused  # who may

        # The app loses contact permission: the entries match nobody, with a warning naming them.
        assert httpx.post(
            f"{rig.wecom_url}/_fake/contacts", json={"contact_errcode": 60011}, timeout=5
        ).json() == {"ok": True}
        caplog.set_level(logging.WARNING)
        user.send_text("zhouji", "ack 2")
        assert rig.wait_reply("zhouji").startswith("无权确认告警 #2")

    warnings = [r.getMessage() for r in caplog.records if "command_allow_entry_unresolved" in r.getMessage()]
    assert any("entry=tag:4" in w and "60011" in w for w in warnings), warnings
    assert any("entry=party:8" in w for w in warnings), warnings
    results = [(row[0], row[2]) for row in rig.audit_rows()]
    assert ("wangwu", "refused") in results and ("zhouji", "refused") in results


def test_replies_about_an_alert_are_in_its_receivers_language(rig: Rig) -> None:
    """The server speaks Chinese, the receiver English: every reply about its
    alert is English, the silencer failure included (its detail goes to the log)."""
    rig.post_named("oncall_en", "EnglishAlert")
    wait_until(lambda: rig.wecom.messages(MESSAGE_SEND), what="the alert")
    with rig.callback() as user:
        user.send_text("zhaoliu", "静默 1 2h")
        assert (
            rig.wait_reply("zhaoliu") == "Silence not created: Alertmanager is unreachable; try again later."
        )
        user.send_text("zhaoliu", "确认 1")
        assert rig.wait_reply("zhaoliu", 2).startswith("Acknowledged #1 EnglishAlert")
        user.send_text("zhaoliu", "取消静默 1")
        assert rig.wait_reply("zhaoliu", 3) == "#1 has no active silence."


def test_contact_lookups_are_cached_for_ten_minutes(rig: Rig) -> None:
    rig.wecom.set_contacts(user_departments={"zhaoliu": [7]})
    config = parse_config(_config(rig.db.parent, rig.wecom_url, rig.silencer_url), {}, "t")
    clock = ManualClock()

    async def run() -> list[frozenset[str]]:
        async with httpx.AsyncClient() as http:
            directory = ContactDirectory(WeComClient(http, rig.wecom_url), clock=clock)
            found = [await directory.departments(config, "ops", "zhaoliu")]
            found.append(await directory.departments(config, "ops", "ZhaoLiu"))
            clock.advance(timedelta(minutes=10).total_seconds() + 1)
            found.append(await directory.departments(config, "ops", "zhaoliu"))
            rig.wecom.set_contacts(contact_errcode=48002)
            clock.advance(601)
            with pytest.raises(ContactUnavailable, match="48002"):
                await directory.departments(config, "ops", "zhaoliu")
            return found

    assert asyncio.run(run()) == [frozenset({"7"})] * 3
    assert rig.wecom.request_count(USER_GET) == 3


def test_check_config_warns_about_silencers_nobody_may_use(tmp_path: Path) -> None:
    path = tmp_path / "alertbridge.toml"
    path.write_text(
        """
[silencers.am]
kind = "alertmanager"
url = "http://127.0.0.1:9093"
[receivers.room]
channel = "robot"
robot_key = "k"
ack_silences = true
[receivers.listed]
channel = "robot"
robot_key = "k"
allow_silence = ["lisi", "party:3"]
allow_ack = ["tag:5"]
ack_silences = true
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "alertbridge", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "warning" in line]
    assert any("receivers.room.allow_silence" in line and "group robot" in line for line in warned)
    assert any("receivers.room.allow_ack" in line for line in warned)
    assert not any("receivers.listed" in line for line in warned)


def test_allow_list_entries_are_validated(tmp_path: Path) -> None:
    from alertbridge.errors import ConfigError

    data = _config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    data["receivers"]["team"]["allow_ack"] = ["lisi", "party:ops"]  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"receivers\.team\.allow_ack.*party:ops"):
        parse_config(data, {}, "t.toml")
