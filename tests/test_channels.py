"""App, robot and console channels, and the registry that builds them.

App and robot channels run over real HTTP against the fake WeCom.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from alertbridge.config import Config
from alertbridge.errors import ConfigError, PermanentDeliveryError
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Channel, Receipt
from alertbridge.messengers.console import ConsoleChannel, ConsoleReceiver
from alertbridge.messengers.registry import MessengerDeps, build_channel, byte_limit
from alertbridge.messengers.wecom.app import AppChannel, build_app_body
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import AppReceiver, RobotReceiver, WeComAppConfig, WeComConfig
from alertbridge.messengers.wecom.robot import RobotChannel
from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, FakeApp, FakeWeCom
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

APP = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr(SECRET))


def message(
    content: str = "**磁盘告警** /data 95%",
    msgtype: str = "markdown",
    channel: str = "app",
    part: int = 1,
    parts: int = 1,
) -> RenderedMessage:
    return RenderedMessage(msgtype, content, byte_limit(channel, msgtype), part, parts)


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY], users=["alice", "bob"])


@pytest.fixture
async def client(wecom_url: str) -> AsyncIterator[WeComClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield WeComClient(http, wecom_url)


# ---- app ----------------------------------------------------------------------


async def test_app_channel_sends_one_message(client: WeComClient, fake: FakeWeCom) -> None:
    channel = AppChannel(client, "ops-app", APP)
    receipt = await channel.send(message(), Recipients(to_user=("alice", "bob"), to_party=("2",)))

    [sent] = fake.messages(MESSAGE_SEND)
    assert receipt == Receipt(msgid=sent.msgid)
    assert sent.body == {
        "touser": "alice|bob",
        "toparty": "2",
        "msgtype": "markdown",
        "markdown": {"content": "**磁盘告警** /data 95%"},
        "agentid": AGENT_ID,
        "enable_duplicate_check": 1,
        "duplicate_check_interval": 60,
    }
    assert channel.kind == "app"


def test_app_body_leaves_out_empty_recipient_kinds() -> None:
    body = build_app_body(message("hi", "text"), Recipients(to_tag=("7",)), AGENT_ID)
    assert "touser" not in body and "toparty" not in body
    assert body["totag"] == "7"
    assert body["text"] == {"content": "hi"}


async def test_app_channel_resend_is_deduplicated_by_wecom(client: WeComClient, fake: FakeWeCom) -> None:
    # A retry after a timeout that WeCom had in fact delivered must not reach people twice.
    channel = AppChannel(client, "ops-app", APP)
    first = await channel.send(message(), Recipients(to_user=("alice",)))
    second = await channel.send(message(), Recipients(to_user=("alice",)))
    assert first == second
    assert len(fake.messages()) == 1
    assert [m.reason for m in fake.dropped()] == ["duplicate"]


async def test_app_channel_without_recipients_fails_without_a_request(
    client: WeComClient, fake: FakeWeCom
) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await AppChannel(client, "ops-app", APP).send(message(), Recipients())
    assert caught.value.reason == "no_recipients"
    assert fake.stats()["requests"][MESSAGE_SEND] == 0


async def test_app_channel_over_limit_is_rejected_by_wecom(client: WeComClient) -> None:
    too_long = RenderedMessage("text", "x" * 2049, 2048)
    with pytest.raises(PermanentDeliveryError) as caught:
        await AppChannel(client, "ops-app", APP).send(too_long, Recipients(to_user=("alice",)))
    assert caught.value.reason == "content_too_long"


# ---- robot -------------------------------------------------------------------


async def test_robot_markdown_up_to_4096_bytes_is_accepted(client: WeComClient, fake: FakeWeCom) -> None:
    content = "告" * 1365 + "!"  # 4096 bytes
    channel = RobotChannel(client, SecretStr(ROBOT_KEY))
    assert await channel.send(message(content, channel="robot"), Recipients()) == Receipt()
    [sent] = fake.messages(WEBHOOK_SEND)
    assert sent.body == {"msgtype": "markdown", "markdown": {"content": content}}
    assert sent.robot_key == ROBOT_KEY


async def test_robot_markdown_of_4097_bytes_is_rejected(client: WeComClient, fake: FakeWeCom) -> None:
    content = "告" * 1365 + "!!"  # 4097 bytes
    channel = RobotChannel(client, SecretStr(ROBOT_KEY))
    with pytest.raises(PermanentDeliveryError) as caught:
        await channel.send(RenderedMessage("markdown", content, 4096), Recipients())
    assert "exceed max length 4096" in str(caught.value)
    assert fake.messages() == []


async def test_robot_text(client: WeComClient, fake: FakeWeCom) -> None:
    await RobotChannel(client, SecretStr(ROBOT_KEY)).send(message("plain", "text", "robot"), Recipients())
    assert fake.messages()[0].body == {"msgtype": "text", "text": {"content": "plain"}}


def test_robot_channel_repr_hides_the_key(client: WeComClient) -> None:
    channel = RobotChannel(client, SecretStr(ROBOT_KEY))
    assert ROBOT_KEY not in repr(channel)
    assert channel.kind == "robot"


# ---- console -----------------------------------------------------------------


class RecordingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def test_console_prints_a_delimited_block() -> None:
    out = RecordingStream()
    channel = ConsoleChannel(out, "trial")
    content = "## 告警\nline two\n"
    receipt = await channel.send(message(content, channel="console", part=2, parts=3), Recipients())

    lines = out.getvalue().splitlines()
    assert (
        lines[0] == f"===== receiver=trial msgtype=markdown part=2/3 bytes={len(content.encode())}/2048 ====="
    )
    assert lines[1:3] == ["## 告警", "line two"]
    assert set(lines[3]) == {"="} and len(lines) == 4
    assert out.flushes >= 1
    assert receipt == Receipt()
    assert channel.kind == "console"


async def test_console_blocks_follow_each_other() -> None:
    out = io.StringIO()
    channel = ConsoleChannel(out)
    await channel.send(message("one", "text", "console"), Recipients())
    await channel.send(message("two", "text", "console"), Recipients())
    assert out.getvalue().count("===== receiver=console msgtype=text") == 2


# ---- registry ----------------------------------------------------------------


def deps(client: WeComClient, apps: dict[str, WeComAppConfig], out: io.StringIO) -> MessengerDeps:
    return MessengerDeps(config=Config(wecom=WeComConfig(apps=apps)), client=client, out=out)


def test_build_channel_per_receiver_kind(client: WeComClient) -> None:
    apps = {"ops-app": APP}
    out = io.StringIO()
    built: dict[str, Channel] = {
        "app": build_channel(
            "oncall",
            AppReceiver(channel="app", app="ops-app", to_user=["alice"]),
            deps(client, apps, out),
        ),
        "robot": build_channel(
            "group",
            RobotReceiver(channel="robot", robot_key=SecretStr(ROBOT_KEY)),
            deps(client, apps, out),
        ),
        "console": build_channel("trial", ConsoleReceiver(channel="console"), deps(client, apps, out)),
    }
    assert isinstance(built["app"], AppChannel)
    assert isinstance(built["robot"], RobotChannel)
    assert isinstance(built["console"], ConsoleChannel)
    assert {kind: channel.kind for kind, channel in built.items()} == {
        "app": "app",
        "robot": "robot",
        "console": "console",
    }


async def test_built_console_channel_names_its_receiver(client: WeComClient) -> None:
    out = io.StringIO()
    channel = build_channel("trial", ConsoleReceiver(channel="console"), deps(client, {}, out))
    await channel.send(message("x", "text", "console"), Recipients())
    assert out.getvalue().startswith("===== receiver=trial ")


async def test_built_app_channel_uses_its_app(client: WeComClient, fake: FakeWeCom) -> None:
    receiver = AppReceiver(channel="app", app="ops-app", to_user=["alice"])
    channel = build_channel("oncall", receiver, deps(client, {"ops-app": APP}, io.StringIO()))
    await channel.send(message(), Recipients(to_user=("alice",)))
    assert fake.messages()[0].agent_id == AGENT_ID


def test_build_channel_rejects_an_unknown_app(client: WeComClient) -> None:
    receiver = AppReceiver(channel="app", app="missing", to_user=["alice"])
    with pytest.raises(ConfigError, match=r"receivers\.oncall\.app"):
        build_channel("oncall", receiver, deps(client, {}, io.StringIO()))
