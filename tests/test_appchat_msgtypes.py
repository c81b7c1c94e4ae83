"""Every type ``appchat/send`` documents that alertbridge composes: text cards and
news dressed exactly as for app receivers, the alert's panel image and its
``attach_files`` by media_id after the message — through a real ``alertbridge
serve``, the loopback image server and the fake WeCom, which holds chat
messages to the same rules as ``message/send``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from alertbridge.config import parse_config
from alertbridge.errors import ConfigError
from alertbridge.testing.fake_appchat import FakeChat
from alertbridge.testing.fake_wecom import APPCHAT_SEND, MESSAGE_SEND, FakeApp, FakeWeCom
from tests.harness import AlertbridgeProcess, wait_until
from tests.image_server import JPEG, PNG, ImageServer
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET, wecom_toml

GRAFANA_FIRING = Path(__file__).parent / "data" / "grafana" / "unified-firing.json"
MEMBERS = ("zhangsan", "lisi")


def serve_config(api_base: str) -> str:
    return f"""
{wecom_toml(api_base)}[receivers.cards]
channel = "appchat"
app = "ops"
chatid = "cardroom"
msgtype = "textcard"
attach_files = ["report_url"]
[receivers.news]
channel = "appchat"
app = "ops"
chatid = "newsroom"
msgtype = "news"
images = true
[receivers.direct]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
msgtype = "textcard"
"""


def grafana_alert(images: ImageServer) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(GRAFANA_FIRING.read_text(encoding="utf-8"))
    payload["alerts"][0]["imageURL"] = f"{images.base_url}/png"
    payload["alerts"][0]["annotations"]["report_url"] = f"{images.base_url}/jpeg"
    return payload


def section(body: dict[str, Any]) -> dict[str, Any]:
    part = body[body["msgtype"]]
    assert isinstance(part, dict)
    return part


def test_textcard_news_panel_and_files_reach_the_chats(tmp_path: Path, images: ImageServer) -> None:
    fake = FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)])
    for chatid in ("cardroom", "newsroom"):
        fake.appchats.add_chat(FakeChat(chatid, chatid, MEMBERS[0], MEMBERS, AGENT_ID))
    with fake.serve() as api_base:
        process = AlertbridgeProcess(tmp_path, serve_config(api_base)).start()
        try:
            for receiver in ("cards", "news", "direct"):
                answer = httpx.post(
                    f"{process.base_url}/grafana/{receiver}", json=grafana_alert(images), timeout=10
                )
                assert answer.status_code == 200, answer.text
            wait_until(lambda: len(fake.messages(APPCHAT_SEND)) >= 4, what="two messages in each chat")
            wait_until(lambda: len(fake.messages(MESSAGE_SEND)) >= 1, what="the app's text card")
            time.sleep(0.3)  # nothing more arrives
        finally:
            process.stop()
    by_chat: dict[str, list[dict[str, Any]]] = {}
    for message in fake.messages(APPCHAT_SEND):
        by_chat.setdefault(message.body["chatid"], []).append(message.body)
    card, report = by_chat["cardroom"]
    news, panel = by_chat["newsroom"]
    assert [card["msgtype"], report["msgtype"], news["msgtype"], panel["msgtype"]] == [
        "textcard",
        "file",
        "news",
        "image",
    ]
    # Dressed as the app receiver's card: the same description, link and button.
    (direct,) = fake.messages(MESSAGE_SEND)
    app_card, chat_card = section(direct.body), section(card)
    assert {k: v for k, v in chat_card.items() if k != "title"} == {
        k: v for k, v in app_card.items() if k != "title"
    }
    strip_ref = re.compile(r" #\d+")
    assert strip_ref.sub("", chat_card["title"]) == strip_ref.sub("", app_card["title"])
    assert chat_card["title"].startswith("【告警】")
    (article,) = section(news)["articles"]
    assert article["url"] == chat_card["url"] and article["picurl"].endswith("/png")
    uploads = {upload.media_id: upload for upload in fake.uploads()}
    assert uploads[section(report)["media_id"]].size == len(JPEG)
    assert uploads[section(panel)["media_id"]].size == len(PNG)
    assert {upload.type for upload in uploads.values()} == {"file", "image"}


def test_the_fake_holds_chat_cards_and_news_to_message_sends_rules(
    fake_wecom: tuple[FakeWeCom, str],
) -> None:
    fake, base_url = fake_wecom
    fake.appchats.add_chat(FakeChat("room", "room", MEMBERS[0], MEMBERS, AGENT_ID))
    article = {"title": "t", "description": "d", "url": "https://x.example/"}
    with httpx.Client(base_url=base_url, timeout=5) as http:
        token = http.get("/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET}).json()
        params = {"access_token": token["access_token"]}

        def send(msgtype: str, part: dict[str, Any]) -> int:
            body = {"chatid": "room", "msgtype": msgtype, msgtype: part}
            errcode = http.post("/cgi-bin/appchat/send", params=params, json=body).json()["errcode"]
            assert isinstance(errcode, int)
            return errcode

        assert send("textcard", {**article, "description": "描" * 171}) == 40058  # 513 bytes
        assert send("textcard", {**article, "btntxt": "详细信息看"}) == 40058
        assert send("news", {"articles": [article] * 9}) == 45008
        assert send("news", {"articles": [{**article, "url": "ftp://x"}]}) == 40058
        assert send("textcard", article) == 0 and send("news", {"articles": [article] * 8}) == 0
    assert [m.msgtype for m in fake.messages(APPCHAT_SEND)] == ["textcard", "news"]


def test_a_chat_cannot_send_template_cards() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "wecom": {"apps": {"ops": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET}}},
                "receivers": {
                    "room": {"channel": "appchat", "app": "ops", "chatid": "r1", "msgtype": "template_card"}
                },
            },
            {},
            "x.toml",
        )
    assert "x.toml: receivers.room.msgtype:" in str(caught.value)
