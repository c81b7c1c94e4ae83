"""``alertbridge send``: one-off messages and files from scripts, run as the real
command against the fake WeCom over HTTP and a real SQLite store — what
arrives, the shared rate budget, exit codes, and bad input refused before
the store or WeCom is touched."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
from tests.image_server import PNG
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

PDF = b"%PDF-1.7\n" + b"quarterly report " * 100
AMR_FRAME = bytes([7 << 3 | 0x04]) + b"\x00" * 31


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "send", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SECRET": SECRET, "ROBOT_KEY": ROBOT_KEY},
    )


@pytest.fixture
def wecom(fake_wecom: tuple[FakeWeCom, str]) -> FakeWeCom:
    return fake_wecom[0]


@pytest.fixture
def config(tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]) -> Path:
    path = tmp_path / "alertbridge.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///{tmp_path / "state" / "alertbridge.db"}"
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
""",
        encoding="utf-8",
    )
    (tmp_path / "state").mkdir()
    return path


def db_of(config: Path) -> Path:
    return config.parent / "state" / "alertbridge.db"


def recent_sends(config: Path) -> list[tuple[str, datetime]]:
    """The sends the store's rate budget holds (what the service reserves against)."""

    async def query() -> list[tuple[str, datetime]]:
        store = SqliteOutboxStore(db_of(config))
        await store.open()
        try:
            return await store.recent_sends(datetime.now(UTC) - timedelta(hours=1))
        finally:
            await store.close()

    return asyncio.run(query())


def test_a_file_arrives_through_the_shared_rate_budget(
    config: Path, wecom: FakeWeCom, tmp_path: Path
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(PDF)
    result = run(config, "--receiver", "oncall", "--file", str(report))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sent file 'report.pdf' ({len(PDF)} bytes) to oncall"
    (upload,) = wecom.uploads()
    assert (upload.type, upload.filename, upload.size) == ("file", "report.pdf", len(PDF))
    (sent,) = wecom.messages(MESSAGE_SEND)
    assert (sent.msgtype, sent.media_id, sent.to_user) == ("file", upload.media_id, ("zhangsan",))

    # The send was counted where the service counts its own: the member's budget keys.
    keys = {key for key, _ in recent_sends(config)}
    assert keys and all("zhangsan" in key for key in keys), keys


def test_text_markdown_and_media_to_a_robot(config: Path, wecom: FakeWeCom, tmp_path: Path) -> None:
    voice = tmp_path / "call.amr"
    voice.write_bytes(b"#!AMR\n" + AMR_FRAME * 100)
    assert run(config, "--receiver", "oncall", "--text", "备份完成").returncode == 0
    assert run(config, "--receiver", "room", "--voice", str(voice)).returncode == 0
    (text,) = wecom.messages(MESSAGE_SEND)
    assert (text.msgtype, text.content) == ("text", "备份完成")
    (robot_voice,) = wecom.messages(WEBHOOK_SEND)
    (uploaded,) = wecom.media.robot_uploads()
    assert robot_voice.body["voice"] == {"media_id": uploaded.media_id}
    assert uploaded.filename == "call.amr"


def test_a_file_and_a_textcard_go_into_an_app_chat_within_its_budget(
    config: Path, wecom: FakeWeCom, tmp_path: Path
) -> None:
    """The one-off goes through appchat/send and counts against the keys the
    service counts chat messages against: the chat's and each member's."""
    wecom.appchats.add_chat(FakeChat("opschat", "ops", "zhangsan", ("zhangsan", "lisi"), AGENT_ID))
    report = tmp_path / "report.pdf"
    report.write_bytes(PDF)
    assert run(config, "--receiver", "chat", "--file", str(report)).returncode == 0
    card = run(config, "--receiver", "chat", "--textcard", "日报", "昨日告警 12 条", "https://r.example/")
    assert card.returncode == 0, card.stderr
    file_message, card_message = wecom.messages(APPCHAT_SEND)
    (upload,) = wecom.uploads()
    assert file_message.body == {
        "chatid": "opschat",
        "msgtype": "file",
        "file": {"media_id": upload.media_id},
    }
    assert card_message.body["textcard"]["title"] == "日报"
    assert card_message.to_user == ("zhangsan", "lisi") and wecom.messages(MESSAGE_SEND) == []
    keys = [key for key, _ in recent_sends(config)]
    prefix = f"app:{CORP_ID}:{AGENT_ID}"
    for key in (f"{prefix}:chat:opschat", f"{prefix}:chat-member:zhangsan", f"{prefix}:chat-member:lisi"):
        assert keys.count(key) == 2, keys


def test_a_huge_file_is_refused_by_its_size_without_being_read(config: Path, tmp_path: Path) -> None:
    huge = tmp_path / "dump.bin"
    with huge.open("wb") as out:
        out.truncate(8 * 1024**3)  # sparse: 8 GB on paper, nothing on disk
    result = run(config, "--receiver", "oncall", "--file", str(huge))
    assert result.returncode == 2
    assert f"has {8 * 1024**3} bytes; a file may have at most 20971520 (20 MB)" in result.stderr


def test_a_textcard_arrives_with_its_title_description_and_link(config: Path, wecom: FakeWeCom) -> None:
    url = "https://reports.example/daily"
    result = run(config, "--receiver", "oncall", "--textcard", "日报", "昨日告警 12 条", url)
    assert result.returncode == 0, result.stderr
    (card,) = wecom.messages(MESSAGE_SEND)
    assert card.msgtype == "textcard"
    assert card.body["textcard"] == {
        "title": "日报",
        "description": "昨日告警 12 条",
        "url": url,
        "btntxt": "详情",
    }


def test_a_spent_rate_budget_is_a_temporary_failure(config: Path, wecom: FakeWeCom) -> None:
    for _ in range(2):
        assert run(config, "--receiver", "room", "--markdown", "**ok**").returncode == 0
    held = run(config, "--receiver", "room", "--markdown", "**ok**", "--wait", "0")
    assert held.returncode == 75
    assert held.stderr.startswith("alertbridge send: not sent: rate budget of room is spent until ")
    assert len(wecom.messages(WEBHOOK_SEND)) == 2


def test_wecom_refusals_exit_1_for_good_and_75_for_now(config: Path, wecom: FakeWeCom) -> None:
    wecom.add_fault("message/send", Fault(errcode=81013, errmsg="user invalid"))
    refused = run(config, "--receiver", "oncall", "--text", "hello")
    assert refused.returncode == 1
    assert "all_recipients_invalid" in refused.stderr
    wecom.add_fault("message/send", Fault(errcode=-1, errmsg="system busy"))
    busy = run(config, "--receiver", "oncall", "--text", "hello")
    assert busy.returncode == 75
    assert "server_busy" in busy.stderr
    # Refused or busy, WeCom answered: the budget got its slots back.
    assert recent_sends(config) == []


def test_a_timed_out_send_may_have_arrived_and_keeps_its_slot(config: Path, wecom: FakeWeCom) -> None:
    wecom.add_fault("message/send", Fault(delay=3.0))
    late = run(config, "--receiver", "oncall", "--text", "hello")
    assert late.returncode == 75
    assert "timeout" in late.stderr and "it may have arrived all the same" in late.stderr
    assert {key for key, _ in recent_sends(config)} and all(
        "zhangsan" in key for key, _ in recent_sends(config)
    )


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
    config: Path, wecom: FakeWeCom, tmp_path: Path, args: tuple[str, ...], data: bytes | None, error: str
) -> None:
    if args[-1].startswith("--") and args[-1] not in ("--text", "--markdown"):
        path = tmp_path / "input.bin"
        if data is not None:
            path.write_bytes(data)
        args = (*args, str(path))
    result = run(config, *args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("alertbridge send: ") and error in line, line
    assert not db_of(config).exists()  # the store was never opened
    assert sum(wecom.stats()["requests"].values()) == 0
    assert wecom.request_count(MEDIA_UPLOAD) == 0
