"""``render`` prints the bytes a real delivery sends, and ``send-test`` sends those parts.

Each case renders a payload for one receiver with the CLI, then posts the
same payload to a real ``alertbridge serve`` (fresh store, so its group is
reference #1, the one ``render`` shows) and compares what the fake WeCom
received over HTTP with what ``render`` printed: a template card, a robot
markdown message with @mentions, a robot text message whose mentions travel
beside the content, and an app text message followed by its alert image.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, FakeApp, FakeWeCom, Message
from tests.harness import AlertbridgeProcess, wait_until
from tests.image_server import ImageServer
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

DATA = Path(__file__).parent / "data"
CALLBACK_TOKEN = "previewCallbackToken"
AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
ENV = {"SECRET": SECRET, "ROBOT_KEY": ROBOT_KEY, "CALLBACK_TOKEN": CALLBACK_TOKEN, "AES_KEY": AES_KEY}

_HEADER = re.compile(rb"----- message (\d+)/(\d+) \xc2\xb7 (\S+) \xc2\xb7 (\d+)/(\d+) bytes -----\n")


def config_body(api_base: str) -> str:
    return f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
token = "${{CALLBACK_TOKEN}}"
encoding_aes_key = "${{AES_KEY}}"
[images]
allow = ["127.0.0.1"]
[receivers.cards]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
msgtype = "template_card"
[receivers.room-md]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
msgtype = "markdown"
[receivers.room-md.mention]
keys = ["team"]
users = {{ payments = ["zhangsan", "lisi"] }}
[receivers.room-text]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
msgtype = "text"
language = "en"
[receivers.room-text.mention]
keys = ["team"]
users = {{ payments = ["zhangsan"] }}
mobiles = {{ payments = ["13800000000"] }}
[receivers.plain]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
msgtype = "text"
images = true
[receivers.quiet]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
send_resolved = false
"""


@dataclass
class Printed:
    """One part as ``render`` printed it."""

    msgtype: str
    size: int
    limit: int
    content: bytes
    card: dict[str, Any] | None = None
    images: list[str] = field(default_factory=list)
    mentions: dict[str, list[str]] = field(default_factory=dict)


def parse_render(stdout: bytes) -> list[Printed]:
    """The parts in ``render``'s output, each content cut by the byte count its header states."""
    parts: list[Printed] = []
    pos = 0
    while pos < len(stdout):
        header = _HEADER.match(stdout, pos)
        assert header is not None, stdout[pos:]
        size = int(header.group(4))
        start = header.end()
        part = Printed(header.group(3).decode(), size, int(header.group(5)), stdout[start : start + size])
        assert stdout[start + size : start + size + 1] == b"\n"
        pos = start + size + 1
        while pos < len(stdout) and not _HEADER.match(stdout, pos):
            end = stdout.index(b"\n", pos)
            line = stdout[pos:end].decode()
            pos = end + 1
            if line == "----- template_card -----":
                text = stdout[pos:].decode()
                part.card, used = json.JSONDecoder().raw_decode(text)
                pos += len(text[:used].encode()) + 1
            elif line.startswith("----- images posted after this message"):
                while pos < len(stdout) and not stdout.startswith(b"-----", pos):
                    end = stdout.index(b"\n", pos)
                    part.images.append(stdout[pos:end].decode())
                    pos = end + 1
            else:
                key, names = line.removeprefix("----- ").split(": ", 1)
                part.mentions[key] = names.split(", ")
        parts.append(part)
    return parts


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", *args, "-c", str(config)],
        capture_output=True,
        env={**os.environ, **ENV},
        timeout=60,
    )


def away_from_a_minute_change() -> None:
    """Cards and templates show minutes: render and delivery must fall in the same one."""
    second = datetime.now(UTC).second
    if second >= 40:
        time.sleep(61 - second)


@pytest.fixture
def fake(serve_wecom: Callable[[FakeWeCom], str]) -> tuple[FakeWeCom, str]:
    """The shared corp's fake WeCom, knowing the members the robot receivers mention."""
    wecom = FakeWeCom(
        apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)],
        robot_keys=[ROBOT_KEY],
        users=["zhangsan", "lisi"],
    )
    return wecom, serve_wecom(wecom)


@pytest.fixture
def render_and_deliver(
    tmp_path: Path, fake: tuple[FakeWeCom, str]
) -> Iterator[Callable[[str, str, bytes], tuple[list[Printed], list[Message]]]]:
    """``(receiver, source, payload)`` → what ``render`` printed, what the fake WeCom got."""
    wecom, base_url = fake
    process = AlertbridgeProcess(tmp_path, config_body(base_url), env=ENV)
    payload_file = tmp_path / "payload.json"

    def run(receiver: str, source: str, payload: bytes) -> tuple[list[Printed], list[Message]]:
        payload_file.write_bytes(payload)
        away_from_a_minute_change()
        rendered = cli(process.config_path, "render", "--receiver", receiver, "--payload", str(payload_file))
        assert rendered.returncode == 0, rendered.stderr.decode()
        printed = parse_render(rendered.stdout)
        answer = httpx.post(f"{process.base_url}/{source}/{receiver}", content=payload, timeout=10)
        assert answer.status_code == 200, answer.text
        wanted = len(printed) + sum(len(p.images) for p in printed)
        wait_until(lambda: len(wecom.messages()) >= wanted, what=f"{wanted} messages")
        return printed, wecom.messages()

    process.start()
    try:
        yield run
    finally:
        process.kill()


def firing_payload() -> bytes:
    return (DATA / "alertmanager" / "firing.json").read_bytes()


def test_a_card_receiver_is_shown_the_card_it_is_sent(render_and_deliver) -> None:  # type: ignore[no-untyped-def]
    printed, received = render_and_deliver("cards", "alertmanager", firing_payload())
    [part] = printed
    [message] = received
    assert part.msgtype == message.msgtype == "template_card"
    assert part.card is not None and part.size == len(part.content) <= part.limit
    sent = dict(message.body["template_card"])
    # Only the task id differs: it names the delivery, which a preview does not have.
    assert (part.card.pop("task_id"), sent.pop("task_id")) == ("ab-1-0-1", "ab-1-1-1")
    assert part.card == sent
    assert "#1" in sent["main_title"]["title"]
    assert sent["button_list"][0]["key"] == "ack:1"


def test_a_robot_markdown_receiver_is_shown_its_mentions(render_and_deliver) -> None:  # type: ignore[no-untyped-def]
    printed, received = render_and_deliver("room-md", "alertmanager", firing_payload())
    assert [m.endpoint for m in received] == [WEBHOOK_SEND] * len(printed)
    for part, message in zip(printed, received, strict=True):
        assert message.content is not None
        assert (part.msgtype, part.content) == (message.msgtype, message.content.encode())
        assert part.size == len(message.content.encode()) and part.limit == 4096
    assert b"<@zhangsan>" in printed[-1].content and b"<@lisi>" in printed[-1].content


def test_a_robot_text_receiver_is_shown_the_mentions_beside_the_content(render_and_deliver) -> None:  # type: ignore[no-untyped-def]
    printed, received = render_and_deliver("room-text", "alertmanager", firing_payload())
    [part] = printed
    [message] = received
    assert message.content is not None and part.content == message.content.encode()
    assert part.size == len(part.content) and part.limit == 2048
    assert part.mentions == {"mentioned_list": ["zhangsan"], "mentioned_mobile_list": ["13800000000"]}
    assert (message.mentioned, message.mentioned_mobiles) == (("zhangsan",), ("13800000000",))


def test_an_app_text_receiver_is_shown_its_bytes_and_images(render_and_deliver, images: ImageServer) -> None:  # type: ignore[no-untyped-def]
    image_url = f"{images.base_url}/png"
    payload = json.loads((DATA / "grafana" / "unified-multi.json").read_text(encoding="utf-8"))
    for alert in payload["alerts"]:
        if "imageURL" in alert:
            alert["imageURL"] = image_url
    printed, received = render_and_deliver("plain", "grafana", json.dumps(payload).encode())
    texts = [m for m in received if m.msgtype == "text"]
    assert all(m.endpoint == MESSAGE_SEND for m in received)
    for part, message in zip(printed, texts, strict=True):
        assert message.content is not None
        assert (part.msgtype, part.content, part.limit) == ("text", message.content.encode(), 2048)
        assert part.size == len(part.content)
    assert printed[-1].images == [image_url]
    assert [m.msgtype for m in received][-1] == "image"


def test_send_test_sends_the_rendered_card_marked_and_on_no_real_reference(
    tmp_path: Path, fake: tuple[FakeWeCom, str]
) -> None:
    wecom, base_url = fake
    config = AlertbridgeProcess(tmp_path, config_body(base_url)).config_path
    result = cli(config, "send-test", "--receiver", "cards")
    assert result.returncode == 0, result.stderr.decode()
    assert "#0 is a placeholder" in result.stdout.decode()
    assert "sent part 1/1 to cards (template_card" in result.stdout.decode()
    [message] = wecom.messages(MESSAGE_SEND)
    card = message.body["template_card"]
    assert card["sub_title_text"].startswith("【测试】")
    # References start at 1: a button on #0 acts on no real alert.
    assert {button["key"].split(":")[1] for button in card["button_list"]} == {"0"}


def test_render_shows_the_sample_and_says_when_nothing_would_be_sent(tmp_path: Path) -> None:
    config = AlertbridgeProcess(tmp_path, config_body("http://127.0.0.1:9")).config_path
    sample = cli(config, "render", "--receiver", "quiet", "--sample")
    assert sample.returncode == 0, sample.stderr.decode()
    [part] = parse_render(sample.stdout)
    assert part.msgtype == "markdown" and part.size == len(part.content) <= part.limit
    assert b"#1" in part.content and "reference shown as #1" in sample.stderr.decode()
    resolved = cli(
        config, "render", "--receiver", "quiet", "--payload", str(DATA / "alertmanager" / "resolved.json")
    )
    assert resolved.returncode == 0, resolved.stderr.decode()
    assert resolved.stdout.decode() == "(nothing: no alert is firing and quiet has send_resolved = false)\n"
