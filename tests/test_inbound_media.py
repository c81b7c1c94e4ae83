"""Files members send to the app (a screenshot replied to an alert), through the
real server's encrypted callback: fetched from the fake WeCom's ``media/get``
with a size cap, stored beside an audit row naming the alert reference, listed
by ``alertbridge audit list`` and written out by ``audit attachment``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from alertbridge.config import parse_config
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.stores.state import Attachment
from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom
from tests.callback_bridge import AES_KEY, FIRING, TOKEN, Bridge
from tests.harness import wait_until
from tests.image_server import PNG
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET


def make_bridge(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str], max_bytes: int
) -> Bridge:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    config = parse_config(
        {
            "server": {"language": "zh"},
            "store": {"url": f"sqlite:///{tmp_path / 'ab.db'}"},
            "wecom": {
                "api_base": serve_wecom(wecom),
                "inbound_media_max_bytes": max_bytes,
                "apps": {
                    "ops": {
                        "corp_id": CORP_ID,
                        "agent_id": AGENT_ID,
                        "secret": SECRET,
                        "token": TOKEN,
                        "encoding_aes_key": AES_KEY,
                    }
                },
            },
            "receivers": {
                "oncall": {"channel": "app", "app": "ops", "to_user": ["zhangsan"], "msgtype": "text"}
            },
        },
        {},
        "test.toml",
    )
    (tmp_path / "ab.toml").write_text(f'[store]\nurl = "sqlite:///{tmp_path / "ab.db"}"\n', encoding="utf-8")
    return Bridge(serve_app(config), wecom, tmp_path / "ab.db")


@pytest.fixture
def bridge(tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]) -> Bridge:
    return make_bridge(tmp_path, serve_wecom, serve_app, 64 * 1024)


def media_xml(user: str, kind: str, media_id: str, msg_id: int, extra: str = "") -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>1700000000</CreateTime>"
        f"<MsgType><![CDATA[{kind}]]></MsgType><MediaId><![CDATA[{media_id}]]></MediaId>{extra}"
        f"<MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>"
    ).encode()


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "audit", *args, "-c", str(tmp_path / "ab.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=dict(os.environ),
    )


def attachment(db: Path, audit_id: int) -> Attachment | None:
    async def read() -> Attachment | None:
        store = SqliteStateStore(db)
        await store.open()
        try:
            return await store.get_attachment(audit_id)
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_screenshot_replied_to_an_alert_is_kept_with_its_reference(bridge: Bridge, tmp_path: Path) -> None:
    bridge.post_alert()
    wait_until(lambda: len(bridge.wecom.messages(MESSAGE_SEND)) == 1)
    screenshot = PNG + b"\x00" * 2000
    media_id = bridge.wecom.media.receive(screenshot, filename="磁盘.png")
    with bridge.callback() as wecom:
        assert wecom.send_xml(media_xml("zhangsan", "image", media_id, 11)).status_code == 200
        reply = bridge.wait_reply("zhangsan", 2)  # the alert itself was the first text
    assert reply.startswith("已保存 #1：磁盘.png（审计记录 ")
    assert bridge.audit() == [("zhangsan", "attach:image", "ok")]
    assert bridge.wecom.media.get_requests == 1

    listed = cli(tmp_path, "list", "--ids")
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1]
    assert "zhangsan" in row and "attach:image" in row and "#1" in row
    assert f"磁盘.png ({len(screenshot)} bytes)" in row
    audit_id = int(row.split()[0])
    assert attachment(bridge.db, audit_id) == Attachment(
        "image", "磁盘.png", "image/png", media_id, screenshot, audit_id=audit_id
    )

    written = cli(tmp_path, "attachment", str(audit_id))
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "磁盘.png").read_bytes() == screenshot
    missing = cli(tmp_path, "attachment", "999")
    assert missing.returncode == 1 and "has no attachment" in missing.stderr


def test_a_file_goes_with_the_reference_of_the_members_last_command(bridge: Bridge) -> None:
    bridge.post_alert()
    wait_until(lambda: len(bridge.wecom.messages(MESSAGE_SEND)) == 1)
    other = {**FIRING, "groupKey": '{}:{alertname="Other"}', "groupLabels": {"alertname": "Other"}}
    bridge.post_alert(payload=other)
    wait_until(lambda: len(bridge.wecom.messages(MESSAGE_SEND)) == 2)
    assert "#2" in (bridge.wecom.messages(MESSAGE_SEND)[1].content or "")
    report = b"%PDF-1.7\n" + b"x" * 500
    media_id = bridge.wecom.media.receive(
        report, type="file", filename="ignored", content_type="application/pdf"
    )
    with bridge.callback() as wecom:
        wecom.send_text("zhangsan", "确认 1")
        bridge.wait_reply("zhangsan", 3)
        wecom.send_xml(
            media_xml("zhangsan", "file", media_id, 12, "<FileName><![CDATA[报表.pdf]]></FileName>")
        )
        reply = bridge.wait_reply("zhangsan", 4)
    # #2 was sent to zhangsan last, but the member was just acting on #1.
    assert reply.startswith("已保存 #1：报表.pdf")
    assert bridge.audit() == [("zhangsan", "ack", "ok"), ("zhangsan", "attach:file", "ok")]


def test_too_large_or_expired_media_is_audited_as_not_kept(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    bridge = make_bridge(tmp_path, serve_wecom, serve_app, 1024)
    big = bridge.wecom.media.receive(PNG + b"\x00" * 4096)
    with bridge.callback() as wecom:
        wecom.send_xml(media_xml("lisi", "image", big, 21))
        assert bridge.wait_reply("lisi") == "文件超过 1 KB，未保存。"
        gone = bridge.wecom.media.receive(PNG)
        bridge.wecom.media.expire()
        wecom.send_xml(media_xml("lisi", "image", gone, 22))
        assert bridge.wait_reply("lisi", 2) == "文件未能保存，请稍后再发一次。"
    assert bridge.audit() == [("lisi", "attach:image", "failed"), ("lisi", "attach:image", "failed")]
    listed = cli(tmp_path, "list")
    assert "too_large" in listed.stdout and "invalid_media_id" in listed.stdout
