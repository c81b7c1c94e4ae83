"""``alertbridge send``: one-off messages and files from scripts, run as the real
command against a real ``alertbridge serve`` (SQLite), the fake WeCom over HTTP:
queued in the outbox and delivered by the service, exit codes, ``--wait``, and
bad input refused before anything is stored or sent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertbridge.stores import Delivery
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.testing.fake_appchat import FakeChat
from alertbridge.testing.fake_wecom import (
    APPCHAT_SEND,
    MEDIA_UPLOAD,
    MESSAGE_SEND,
    WEBHOOK_SEND,
    FakeWeCom,
    Fault,
)
from tests.harness import AlertbridgeProcess, wait_until
from tests.image_server import PNG
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

PDF = b"%PDF-1.7\n" + b"quarterly report " * 100
AMR_FRAME = bytes([7 << 3 | 0x04]) + b"\x00" * 31
ENV = {"SECRET": SECRET, "ROBOT_KEY": ROBOT_KEY}


def run(bridge: AlertbridgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "send", "-c", str(bridge.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **ENV},
    )


@pytest.fixture
def wecom(fake_wecom: tuple[FakeWeCom, str]) -> FakeWeCom:
    return fake_wecom[0]


@pytest.fixture
def bridge(tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]) -> Iterator[AlertbridgeProcess]:
    """The service's config and process, not started: ``send`` and ``serve`` share the config."""
    body = f"""
[wecom]
api_base = "{fake_wecom[1]}"
timeout = "1s"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
[receivers.room]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
rate_limit_per_minute = 2
[receivers.chat]
channel = "appchat"
app = "ops"
chatid = "opschat"
[receivers.console]
channel = "console"
"""
    process = AlertbridgeProcess(tmp_path, body, env=ENV)
    try:
        yield process
    finally:
        process.stop()


def stored(bridge: AlertbridgeProcess) -> list[Delivery]:
    """Every delivery in the outbox, newest first."""

    async def query() -> list[Delivery]:
        store = SqliteOutboxStore(bridge.db_path)
        await store.open()
        try:
            return await store.list()
        finally:
            await store.close()

    return asyncio.run(query())


def recent_sends(bridge: AlertbridgeProcess) -> list[tuple[str, datetime]]:
    """The sends the store's rate budget holds."""

    async def query() -> list[tuple[str, datetime]]:
        store = SqliteOutboxStore(bridge.db_path)
        await store.open()
        try:
            return await store.recent_sends(datetime.now(UTC) - timedelta(hours=1))
        finally:
            await store.close()

    return asyncio.run(query())


def test_a_file_is_queued_and_the_running_service_delivers_it(
    bridge: AlertbridgeProcess, wecom: FakeWeCom, tmp_path: Path
) -> None:
    bridge.start()
    report = tmp_path / "report.pdf"
    report.write_bytes(PDF)
    result = run(bridge, "--receiver", "oncall", "--file", str(report))
    assert result.returncode == 0, result.stderr
    (delivery,) = stored(bridge)
    assert (
        result.stdout.strip()
        == f"queued file 'report.pdf' ({len(PDF)} bytes) to oncall: delivery {delivery.id}"
    )
    (upload,) = wecom.uploads()  # uploaded by send, before the delivery was stored
    assert (upload.type, upload.filename, upload.size) == ("file", "report.pdf", len(PDF))
    wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the file")
    (sent,) = wecom.messages(MESSAGE_SEND)
    assert (sent.msgtype, sent.media_id, sent.to_user) == ("file", upload.media_id, ("zhangsan",))
    # Sent by the service, within the member's budget, and finished in the outbox.
    keys = {key for key, _ in recent_sends(bridge)}
    assert keys and all("zhangsan" in key for key in keys), keys
    wait_until(lambda: stored(bridge)[0].status == "sent", what="the delivery marked sent")


def test_a_text_queued_while_the_service_is_stopped_goes_out_once_it_starts(
    bridge: AlertbridgeProcess, wecom: FakeWeCom
) -> None:
    result = run(bridge, "--receiver", "oncall", "--text", "备份完成")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("queued text (12/2048 bytes) to oncall: delivery ")
    assert wecom.messages(MESSAGE_SEND) == []
    bridge.start()
    wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the text")
    time.sleep(1.5)  # a poll round more: it is not sent twice
    (text,) = wecom.messages(MESSAGE_SEND)
    assert (text.msgtype, text.content) == ("text", "备份完成")


def test_wait_follows_robot_media_and_app_chat_messages_until_sent(
    bridge: AlertbridgeProcess, wecom: FakeWeCom, tmp_path: Path
) -> None:
    wecom.appchats.add_chat(FakeChat("opschat", "ops", "zhangsan", ("zhangsan", "lisi"), AGENT_ID))
    bridge.start()
    voice = tmp_path / "call.amr"
    voice.write_bytes(b"#!AMR\n" + AMR_FRAME * 100)
    image = tmp_path / "panel.png"
    image.write_bytes(PNG)
    report = tmp_path / "report.pdf"
    report.write_bytes(PDF)
    for args in (
        ("--receiver", "room", "--voice", str(voice)),
        ("--receiver", "room", "--image", str(image)),
        ("--receiver", "chat", "--file", str(report)),
        ("--receiver", "chat", "--textcard", "日报", "昨日告警 12 条", "https://r.example/"),
    ):
        result = run(bridge, *args, "--wait", "20")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("sent "), result.stdout
    robot_voice, robot_image = wecom.messages(WEBHOOK_SEND)
    (uploaded,) = wecom.media.robot_uploads()
    assert robot_voice.body["voice"] == {"media_id": uploaded.media_id} and uploaded.filename == "call.amr"
    assert robot_image.body["msgtype"] == "image" and robot_image.body["image"]["md5"]
    file_message, card_message = wecom.messages(APPCHAT_SEND)
    (upload,) = wecom.uploads()
    assert file_message.body == {
        "chatid": "opschat",
        "msgtype": "file",
        "file": {"media_id": upload.media_id},
    }
    assert card_message.body["textcard"]["title"] == "日报"
    assert card_message.to_user == ("zhangsan", "lisi") and wecom.messages(MESSAGE_SEND) == []


def test_wait_exits_1_for_a_dead_letter_and_75_while_not_sent(
    bridge: AlertbridgeProcess, wecom: FakeWeCom
) -> None:
    pending = run(bridge, "--receiver", "oncall", "--text", "hello", "--wait", "0.5")
    assert pending.returncode == 75
    last = pending.stderr.splitlines()[-1]  # after the store's migration log line
    assert last.startswith("alertbridge send: queued text (5/2048 bytes) to oncall: delivery ")
    assert last.endswith(", not sent yet")
    bridge.start()
    wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the queued text")
    wecom.add_fault("message/send", Fault(errcode=81013, errmsg="user invalid"))
    refused = run(bridge, "--receiver", "oncall", "--text", "hello again", "--wait", "20")
    assert refused.returncode == 1
    assert " is dead: " in refused.stderr and "all_recipients_invalid" in refused.stderr


def test_a_failed_upload_stores_nothing(bridge: AlertbridgeProcess, wecom: FakeWeCom, tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(PDF)
    wecom.add_fault("media/upload", Fault(errcode=-1, errmsg="system busy"))
    busy = run(bridge, "--receiver", "oncall", "--file", str(report))
    assert busy.returncode == 75
    assert "alertbridge send: upload failed: server_busy" in busy.stderr.splitlines()[-1]
    assert stored(bridge) == []


def test_a_huge_file_is_refused_by_its_size_without_being_read(
    bridge: AlertbridgeProcess, tmp_path: Path
) -> None:
    huge = tmp_path / "dump.bin"
    with huge.open("wb") as out:
        out.truncate(8 * 1024**3)  # sparse: 8 GB on paper, nothing on disk
    result = run(bridge, "--receiver", "oncall", "--file", str(huge))
    assert result.returncode == 2
    assert f"has {8 * 1024**3} bytes; a file may have at most 20971520 (20 MB)" in result.stderr


@pytest.mark.parametrize(
    ("args", "data", "error"),
    [
        (("--receiver", "oncall", "--file"), None, "cannot read: No such file or directory"),
        (("--receiver", "oncall", "--image"), b"GIF89a-not-png-or-jpeg", "image refused (bad_type)"),
        (
            ("--receiver", "oncall", "--image"),
            PNG + b"\x00" * (10 * 1024 * 1024),
            "image refused (too_large)",
        ),
        (("--receiver", "oncall", "--file"), b"tiny", "file refused (too_small)"),
        (("--receiver", "oncall", "--voice"), b"#!AMR\n" + AMR_FRAME * 3001, "voice refused (too_long)"),
        (("--receiver", "oncall", "--video"), b"RIFF....AVI LIST", "video refused (bad_type)"),
        (
            ("--receiver", "room", "--video"),
            b"\x00\x00\x00\x18ftypmp42",
            "a group robot, which cannot send a video",
        ),
        (
            ("--receiver", "room", "--image"),
            PNG + b"\x00" * (2 * 1024 * 1024),
            "a group robot's image may have",
        ),
        (("--receiver", "nobody", "--text", "hi"), None, "no receiver 'nobody' in the config"),
        (("--receiver", "console", "--text", "hi"), None, "send takes app, appchat and robot receivers"),
        (
            ("--receiver", "oncall", "--text", "长" * 700),
            None,
            "the text has 2100 bytes; app text messages may have 2048",
        ),
        (("--receiver", "oncall", "--markdown", "  "), None, "the markdown is empty"),
        (("--receiver", "room", "--textcard", "t", "d", "https://x"), None, "which cannot send a textcard"),
        (("--receiver", "oncall", "--textcard", "长" * 43, "d", "https://x"), None, "title has 129 bytes"),
        (("--receiver", "oncall", "--textcard", "t", "d", "ftp://x"), None, "must be an http(s) URL"),
    ],
)
def test_bad_input_is_refused_before_anything_is_stored_or_sent(
    bridge: AlertbridgeProcess,
    wecom: FakeWeCom,
    tmp_path: Path,
    args: tuple[str, ...],
    data: bytes | None,
    error: str,
) -> None:
    if args[-1].startswith("--") and args[-1] not in ("--text", "--markdown"):
        path = tmp_path / "input.bin"
        if data is not None:
            path.write_bytes(data)
        args = (*args, str(path))
    result = run(bridge, *args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("alertbridge send: ") and error in line, line
    assert not bridge.db_path.exists()  # the store was never opened: the outbox stays empty
    assert sum(wecom.stats()["requests"].values()) == 0
    assert wecom.request_count(MEDIA_UPLOAD) == 0
