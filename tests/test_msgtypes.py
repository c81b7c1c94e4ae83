"""Every receiver msgtype, end to end: a real alertbridge on loopback posting to the fake WeCom over HTTP.

Each new type (app textcard / news / notice cards, robot markdown_v2 / news /
notice cards) delivers a group the fake accepted within WeCom's limits; big
groups split into several cards or news messages without losing an alert;
over-long titles are cut on a character boundary; the fake refuses
over-limit bodies with WeCom's errcodes; wrong msgtypes are config errors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.config import Config
from alertbridge.errors import ConfigError
from alertbridge.message import RenderedMessage
from alertbridge.messengers.registry import BYTE_LIMITS
from alertbridge.messengers.wecom.articles import clip_bytes, dress, mark_card, part_title
from alertbridge.messengers.wecom.config import AppReceiver
from alertbridge.messengers.wecom.errcodes import ErrCode, classify
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.render import Renderer
from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, FakeApp, FakeWeCom, Message
from tests.config_builder import build_config
from tests.harness import wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

DATA = Path(__file__).parent / "data"
FIRING = json.loads((DATA / "alertmanager" / "firing.json").read_text("utf-8"))
NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
# Receivers of every new type: name -> (channel, msgtype, extra keys).
RECEIVERS: dict[str, tuple[str, str, dict[str, object]]] = {
    "app_textcard": ("app", "textcard", {}),
    "app_news": ("app", "news", {}),
    "app_text_notice": ("app", "template_card", {"card_type": "text_notice"}),
    "app_news_notice": ("app", "template_card", {"card_type": "news_notice"}),
    "robot_markdown_v2": ("robot", "markdown_v2", {}),
    "robot_news": ("robot", "news", {}),
    "robot_text_notice": ("robot", "template_card", {}),
    "robot_news_notice": ("robot", "template_card", {"card_type": "news_notice"}),
}


def receiver_section(channel: str, msgtype: str, extra: dict[str, object]) -> dict[str, object]:
    if channel == "app":
        return {"channel": "app", "app": "ops", "to_user": ["zhangsan"], "msgtype": msgtype, **extra}
    return {"channel": "robot", "robot_key": ROBOT_KEY, "msgtype": msgtype, **extra}


def msgtype_config(tmp_path: Path, base_url: str, receivers: dict[str, object]) -> Config:
    return build_config(
        tmp_path / "ab.db",
        server={"language": "zh"},
        wecom={
            "api_base": base_url,
            "apps": {"ops": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET}},
        },
        receivers=receivers,
    )


def post(base_url: str, path: str, body: dict[str, Any]) -> None:
    response = httpx.post(f"{base_url}{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text


def many_alerts(count: int, *, name: str = "E2EHighLatency") -> dict[str, Any]:
    """Alertmanager's webhook body of ``count`` firing alerts with unique instance tokens."""
    template = FIRING["alerts"][0]
    alerts = [
        {
            **template,
            "labels": {**template["labels"], "alertname": name, "instance": f"node-{i:03d}:9100"},
            "fingerprint": f"{i:016x}",
        }
        for i in range(count)
    ]
    return {
        **FIRING,
        "alerts": alerts,
        "commonLabels": {"alertname": name},
        "groupLabels": {"alertname": name},
    }


def section(message: Message) -> dict[str, Any]:
    body = message.body[message.msgtype]
    assert isinstance(body, dict)
    return body


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def assert_within_limits(message: Message) -> None:
    """What the fake accepted is within WeCom's documented limits (docs §4.3, §5)."""
    part = section(message)
    if message.msgtype == "textcard":
        assert utf8(part["title"]) <= 128 and utf8(part["description"]) <= 512
        assert part["url"].startswith("http") and len(part["btntxt"]) <= 4
    elif message.msgtype == "news":
        assert 1 <= len(part["articles"]) <= 8
        for article in part["articles"]:
            assert utf8(article["title"]) <= 128 and utf8(article["description"]) <= 512
    elif message.msgtype == "markdown_v2":
        assert utf8(part["content"]) <= 4096
        assert "<font" not in part["content"] and "<@" not in part["content"]


# ---- each type delivers --------------------------------------------------------------


def test_every_new_msgtype_delivers_a_group_the_fake_accepts(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    wecom = FakeWeCom(apps=[FakeApp(CORP_ID, SECRET, AGENT_ID)], robot_keys=[ROBOT_KEY])
    receivers: dict[str, object] = {name: receiver_section(*spec) for name, spec in RECEIVERS.items()}
    base_url = serve_app(msgtype_config(tmp_path, serve_wecom(wecom), receivers))
    grafana = json.loads((DATA / "grafana" / "unified-multi.json").read_text("utf-8"))
    for name in RECEIVERS:
        # news_notice cards and news articles show the panel image: Grafana sends one.
        if name.endswith("news") or name.endswith("news_notice"):
            post(base_url, f"/grafana/{name}", grafana)
        else:
            post(base_url, f"/alertmanager/{name}", FIRING)
    wait_until(lambda: len(wecom.messages()) >= len(RECEIVERS), what="a message per receiver")
    kinds = {(m.endpoint, m.msgtype) for m in wecom.messages()}
    assert kinds == {
        (MESSAGE_SEND, "textcard"),
        (MESSAGE_SEND, "news"),
        (MESSAGE_SEND, "template_card"),
        (WEBHOOK_SEND, "markdown_v2"),
        (WEBHOOK_SEND, "news"),
        (WEBHOOK_SEND, "template_card"),
    }
    card_types = sorted(
        m.body["template_card"]["card_type"] for m in wecom.messages() if m.msgtype == "template_card"
    )
    assert card_types == ["news_notice", "news_notice", "text_notice", "text_notice"]
    for message in wecom.messages():
        assert_within_limits(message)
    textcard = next(section(m) for m in wecom.messages() if m.msgtype == "textcard")
    assert textcard["title"].startswith("【告警】E2EHighLatency #")
    assert "api-1:9100" in textcard["description"] and "api-2:9100" in textcard["description"]
    # The link: the first alert's graph (no runbook).
    assert textcard["url"] == FIRING["alerts"][0]["generatorURL"]
    news = [section(m) for m in wecom.messages() if m.msgtype == "news"]
    assert all(article["picurl"].startswith("http") for part in news for article in part["articles"][:1])
    notice = [m.body["template_card"] for m in wecom.messages() if m.msgtype == "template_card"]
    assert all(card["card_action"]["url"].startswith("http") for card in notice)
    assert all("button_list" not in card for card in notice)
    assert all(
        card["card_image"]["url"].startswith("http") for card in notice if card["card_type"] == "news_notice"
    )


def test_a_resolved_group_to_a_notice_card_receiver_is_a_card_too(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    """A notice card has no buttons to update: the resolution is a card of its own."""
    wecom = FakeWeCom(apps=[FakeApp(CORP_ID, SECRET, AGENT_ID)], robot_keys=[ROBOT_KEY])
    receivers: dict[str, object] = {"cards": receiver_section("robot", "template_card", {})}
    base_url = serve_app(msgtype_config(tmp_path, serve_wecom(wecom), receivers))
    post(base_url, "/alertmanager/cards", FIRING)
    wait_until(lambda: len(wecom.messages()) == 1, what="the firing card")
    resolved = json.loads((DATA / "alertmanager" / "resolved.json").read_text("utf-8"))
    post(base_url, "/alertmanager/cards", resolved)
    wait_until(lambda: len(wecom.messages()) == 2, what="the resolved card")
    titles = [m.body["template_card"]["main_title"]["title"] for m in wecom.messages()]
    assert titles[0].startswith("【告警】") and titles[1].startswith("【已恢复】")


# ---- big groups split, nothing lost ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channel", "msgtype", "count"),
    [
        # Some 3 alerts a 512-byte card: 40 alerts stay within a member's 30 messages a minute.
        ("cards", "app", "textcard", 40),
        ("app_news", "app", "news", 120),
        ("robot_news", "robot", "news", 120),
        ("robot_v2", "robot", "markdown_v2", 120),
    ],
)
def test_a_big_group_splits_without_losing_an_alert(
    tmp_path: Path,
    serve_wecom: Callable[[FakeWeCom], str],
    serve_app: Callable[..., str],
    name: str,
    channel: str,
    msgtype: str,
    count: int,
) -> None:
    wecom = FakeWeCom(apps=[FakeApp(CORP_ID, SECRET, AGENT_ID)], robot_keys=[ROBOT_KEY])
    receivers: dict[str, object] = {name: receiver_section(channel, msgtype, {})}
    base_url = serve_app(msgtype_config(tmp_path, serve_wecom(wecom), receivers))
    post(base_url, f"/alertmanager/{name}", many_alerts(count))

    def shown() -> str:
        texts: list[str] = []
        for message in wecom.messages():
            part = section(message)
            if msgtype == "news":
                texts.extend(article["description"] for article in part["articles"])
            else:
                texts.append(part.get("description") or part.get("content", ""))
        return "\n".join(texts)

    wait_until(lambda: f"node-{count - 1:03d}:9100" in shown(), timeout=40, what="the last alert")
    messages = wecom.messages()
    assert len(messages) > 1
    for message in messages:
        assert message.msgtype == msgtype
        assert_within_limits(message)
    everything = shown()
    for i in range(count):
        assert len(re.findall(rf"node-{i:03d}:9100", everything)) == 1, i
    if msgtype == "textcard":
        titles = [section(m)["title"] for m in messages]
        assert titles[-1].endswith(f"({len(messages)}/{len(messages)})")
    if msgtype == "news":
        # Full messages of 8 articles, then the rest; articles numbered across them.
        counts = [len(section(m)["articles"]) for m in messages]
        assert all(c == 8 for c in counts[:-1]) and 1 <= counts[-1] <= 8
        last = section(messages[-1])["articles"][-1]["title"]
        assert last.endswith(f"({sum(counts)}/{sum(counts)})")


def test_a_group_of_more_cards_than_the_budget_is_digested_whole(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    """More textcards than a member may get in a minute: the group goes as a
    markdown digest instead, as text and markdown groups do — every alert in it."""
    wecom = FakeWeCom(apps=[FakeApp(CORP_ID, SECRET, AGENT_ID)], robot_keys=[ROBOT_KEY])
    receivers: dict[str, object] = {"cards": receiver_section("app", "textcard", {})}
    base_url = serve_app(msgtype_config(tmp_path, serve_wecom(wecom), receivers))
    post(base_url, "/alertmanager/cards", many_alerts(150))

    def shown() -> str:
        return "\n".join(m.content or "" for m in wecom.messages())

    wait_until(lambda: "node-149:9100" in shown(), timeout=40, what="the digest's last alert")
    assert {m.msgtype for m in wecom.messages()} == {"markdown"}
    assert all(f"node-{i:03d}:9100" in shown() for i in range(150))


# ---- titles cut safely ---------------------------------------------------------------------


def group_named(name: str, *, image: str = "", external_url: str = "http://am.test:9093") -> AlertGroup:
    alert = Alert(
        status=Status.FIRING,
        labels=MappingProxyType({"alertname": name, "instance": "web-1"}),
        annotations=MappingProxyType({}),
        starts_at=NOW - timedelta(minutes=5),
        ends_at=None,
        fingerprint="f" * 16,
        image_url=image,
    )
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key="k",
        alerts=(alert,),
        group_labels=MappingProxyType({"alertname": name}),
        common_labels=MappingProxyType({"alertname": name}),
        external_url=external_url,
    )


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=99999), st.integers(1, 30))
def test_titles_are_cut_on_a_character_boundary(name: str, ref: int, parts: int) -> None:
    """Whatever the name (CJK, emoji, combining marks), the title fits 128
    bytes, encodes (no half character), and keeps status, reference and part."""
    title = part_title(group_named(name), ref=ref, language="zh", part=parts, parts=parts)
    assert utf8(title) <= 128
    assert title.encode("utf-8").decode("utf-8") == title
    assert title.startswith("【告警】") and f"#{ref}" in title
    if parts > 1:
        assert title.endswith(f"({parts}/{parts})")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=0, max_value=200))
def test_clip_bytes_never_splits_a_character(text: str, most: int) -> None:
    clipped = clip_bytes(text, most)
    assert utf8(clipped) <= most
    folded = " ".join(text.split())
    assert clipped == folded or clipped.endswith("…") or utf8("…") > most


def test_a_long_cjk_name_is_cut_with_an_ellipsis_in_the_textcard_sent() -> None:
    group = group_named("磁盘" * 100)
    rendered = [RenderedMessage(msgtype="textcard", content="x", limit=512)]
    dressed = dress(rendered, group, ref=27, language="zh")
    assert dressed is not None and dressed[0].card is not None
    title = dressed[0].card["title"]
    assert "…" in title and utf8(title) <= 128 and title.endswith(" #27")


def test_a_group_without_any_link_goes_as_markdown() -> None:
    """textcard and news require a url: a group without one cannot be a card."""
    group = group_named("X", external_url="")
    rendered = [RenderedMessage(msgtype="news", content="x", limit=512)]
    assert dress(rendered, group, ref=1, language="zh") is None


RENDERER = Renderer(timezone=ZoneInfo("Asia/Shanghai"))
# Values as hostile as labels get: CJK, emoji, markup, long runs.
VALUES = st.text(alphabet=st.sampled_from('磁盘空间不足ab<>&"🔥 é/_-'), max_size=120)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(VALUES, VALUES, st.sampled_from(Status)), min_size=1, max_size=40),
    st.sampled_from([("app", "textcard"), ("app", "news"), ("robot", "news")]),
    st.sampled_from(["zh", "en"]),
)
def test_description_templates_fit_and_keep_every_alert(
    specs: list[tuple[str, str, Status]], combo: tuple[str, str], language: str
) -> None:
    """The description templates pack any group into parts of at most 512
    bytes, each alert (its unique instance token) in exactly one part."""
    alerts = tuple(
        Alert(
            status=status,
            labels=MappingProxyType({"alertname": name or "X", "instance": f"§{i}§{target}"}),
            annotations=MappingProxyType({"summary": name * 3}),
            starts_at=NOW,
            ends_at=None if status is Status.FIRING else NOW,
            fingerprint=f"{i:016x}",
        )
        for i, (name, target, status) in enumerate(specs)
    )
    group = AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key="k",
        alerts=alerts,
        external_url="http://am.test",
    )
    channel, msgtype = combo
    parts = RENDERER.render(
        group, template="default", language=language, msgtype=msgtype, channel=channel, now=NOW, ref=3
    )
    assert all(p.byte_count <= BYTE_LIMITS[combo] == 512 for p in parts)
    joined = "\n".join(p.content for p in parts)
    assert all(joined.count(f"§{i}§") == 1 for i in range(len(alerts)))
    dressed = dress(parts, group, ref=3, language=language)
    assert dressed is not None
    sections = [dict(m.card or {}) for m in dressed]
    shown = [a for part in sections for a in part["articles"]] if msgtype == "news" else sections
    assert [item["description"] for item in shown] == [p.content for p in parts]
    assert all(utf8(item["title"]) <= 128 and item["url"] == "http://am.test" for item in shown)
    assert all(len(part.get("articles", ())) <= 8 for part in sections)


# ---- the fake refuses what WeCom refuses ---------------------------------------------------


def app_send(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    token = httpx.get(
        f"{base_url}/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET}, timeout=5
    ).json()["access_token"]
    full = {"touser": "zhangsan", "agentid": AGENT_ID, **body}
    return post_raw(f"{base_url}/cgi-bin/message/send", {"access_token": token}, full)


def robot_send(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    return post_raw(f"{base_url}/cgi-bin/webhook/send", {"key": ROBOT_KEY}, body)


def post_raw(url: str, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Posts ``body`` as WeCom wants it (UTF-8, no \\u escapes); the JSON answer."""
    content = json.dumps(body, ensure_ascii=False).encode()
    answer = httpx.post(url, params=params, content=content, timeout=5).json()
    assert isinstance(answer, dict)
    return answer


ARTICLE = {"title": "t", "description": "d", "url": "https://x.test/a"}
TEXTCARD = {"title": "t", "description": "d", "url": "https://x.test/a", "btntxt": "详情"}
NOTICE = {
    "card_type": "text_notice",
    "main_title": {"title": "t"},
    "card_action": {"type": 1, "url": "https://x"},
}


@pytest.mark.parametrize(
    ("where", "body", "errcode"),
    [
        (
            "app",
            {"msgtype": "textcard", "textcard": {**TEXTCARD, "title": "标" * 43}},
            ErrCode.INVALID_PARAMETER,
        ),
        (
            "app",
            {"msgtype": "textcard", "textcard": {**TEXTCARD, "description": "述" * 171}},
            ErrCode.INVALID_PARAMETER,
        ),
        ("app", {"msgtype": "textcard", "textcard": {**TEXTCARD, "url": ""}}, ErrCode.INVALID_PARAMETER),
        ("app", {"msgtype": "textcard", "textcard": {**TEXTCARD, "title": ""}}, ErrCode.INVALID_PARAMETER),
        (
            "app",
            {"msgtype": "textcard", "textcard": {**TEXTCARD, "btntxt": "更多详情啊"}},
            ErrCode.INVALID_PARAMETER,
        ),
        ("app", {"msgtype": "news", "news": {"articles": [ARTICLE] * 9}}, ErrCode.TOO_MANY_ARTICLES),
        ("app", {"msgtype": "news", "news": {"articles": []}}, ErrCode.INVALID_PARAMETER),
        ("app", {"msgtype": "template_card", "template_card": {**NOTICE, "main_title": {}}}, 42033),
        ("robot", {"msgtype": "news", "news": {"articles": [ARTICLE] * 9}}, ErrCode.TOO_MANY_ARTICLES),
        (
            "robot",
            {"msgtype": "news", "news": {"articles": [{**ARTICLE, "title": "标" * 43}]}},
            ErrCode.INVALID_PARAMETER,
        ),
        (
            "robot",
            {"msgtype": "markdown_v2", "markdown_v2": {"content": "字" * 1366}},
            ErrCode.INVALID_PARAMETER,
        ),
        ("robot", {"msgtype": "markdown_v2", "markdown_v2": {"content": ""}}, ErrCode.CONTENT_EMPTY),
        ("robot", {"msgtype": "markdown", "markdown": {"content": "字" * 1366}}, ErrCode.INVALID_PARAMETER),
        (
            "robot",
            {
                "msgtype": "template_card",
                "template_card": {k: v for k, v in NOTICE.items() if k != "card_action"},
            },
            ErrCode.INVALID_PARAMETER,
        ),
        (
            "robot",
            {"msgtype": "template_card", "template_card": {**NOTICE, "card_type": "button_interaction"}},
            42031,
        ),
        (
            "robot",
            {"msgtype": "template_card", "template_card": {**NOTICE, "card_type": "news_notice"}},
            ErrCode.INVALID_PARAMETER,
        ),
    ],
)
def test_the_fake_refuses_over_limit_bodies_with_wecoms_errcode(
    fake_wecom: tuple[FakeWeCom, str], where: str, body: dict[str, Any], errcode: int
) -> None:
    _, base_url = fake_wecom
    answer = app_send(base_url, body) if where == "app" else robot_send(base_url, body)
    assert answer["errcode"] == errcode, answer


def test_the_fake_accepts_each_type_at_its_limits(fake_wecom: tuple[FakeWeCom, str]) -> None:
    fake, base_url = fake_wecom
    at_limit = {**TEXTCARD, "title": "标" * 42 + "ab", "description": "述" * 170 + "ab"}
    assert app_send(base_url, {"msgtype": "textcard", "textcard": at_limit})["errcode"] == 0
    assert app_send(base_url, {"msgtype": "news", "news": {"articles": [ARTICLE] * 8}})["errcode"] == 0
    assert (
        robot_send(base_url, {"msgtype": "markdown_v2", "markdown_v2": {"content": "字" * 1365}})["errcode"]
        == 0
    )
    assert robot_send(base_url, {"msgtype": "template_card", "template_card": NOTICE})["errcode"] == 0
    assert len(fake.messages()) == 4


def test_too_many_articles_is_a_named_permanent_message_fault() -> None:
    rule = classify(ErrCode.TOO_MANY_ARTICLES)
    assert (rule.reason, rule.retryable, rule.message_at_fault) == ("too_many_articles", False, True)


# ---- config errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "msgtype", "extra", "key"),
    [
        ("app", "markdown_v2", {}, "receivers.bad.msgtype"),
        ("robot", "textcard", {}, "receivers.bad.msgtype"),
        ("robot", "template_card", {"card_type": "button_interaction"}, "receivers.bad.card_type"),
        ("app", "template_card", {"card_type": "vote_interaction"}, "receivers.bad.card_type"),
    ],
)
def test_a_msgtype_the_channel_cannot_send_is_a_config_error(
    tmp_path: Path, channel: str, msgtype: str, extra: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        msgtype_config(tmp_path, "http://wecom.test", {"bad": receiver_section(channel, msgtype, extra)})
    text = str(caught.value)
    assert "test.toml" in text and key in text, text


def test_notice_cards_on_an_app_need_no_callback(tmp_path: Path) -> None:
    """Only button cards call back; a text_notice receiver on an app without token/aes key is valid."""
    config = msgtype_config(
        tmp_path,
        "http://wecom.test",
        {"ok": receiver_section("app", "template_card", {"card_type": "text_notice"})},
    )
    receiver = config.receivers["ok"]
    assert isinstance(receiver, AppReceiver) and receiver.card_type == "text_notice"
    with pytest.raises(ConfigError) as caught:
        msgtype_config(tmp_path, "http://wecom.test", {"bad": receiver_section("app", "template_card", {})})
    assert "receivers.bad.msgtype" in str(caught.value)


# ---- send-test marks every shape -------------------------------------------------------------


def test_send_test_marks_cards_and_articles_and_the_fake_accepts_them(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    """``send-test`` sends the sample group marked 【测试】 where each shape shows
    it: a text card's description, a news message's first article, a notice
    card's sub-title — within the limits, so the fake accepts each."""
    wecom, base_url = fake_wecom
    receivers = {
        "card": ("app", "textcard", ""),
        "news": ("robot", "news", ""),
        "notice": ("robot", "template_card", 'card_type = "news_notice"'),
        "v2": ("robot", "markdown_v2", ""),
    }
    blocks = []
    for name, (channel, msgtype, extra) in receivers.items():
        target = 'app = "ops"\nto_user = ["zhangsan"]' if channel == "app" else 'robot_key = "${ROBOT_KEY}"'
        blocks.append(
            f'[receivers.{name}]\nchannel = "{channel}"\nmsgtype = "{msgtype}"\n{target}\n{extra}\n'
        )
    config = tmp_path / "alertbridge.toml"
    config.write_text(
        f'[wecom]\napi_base = "{base_url}"\n[wecom.apps.ops]\ncorp_id = "{CORP_ID}"\n'
        f'agent_id = {AGENT_ID}\nsecret = "${{SECRET}}"\n' + "\n".join(blocks),
        encoding="utf-8",
    )
    for name in receivers:
        result = subprocess.run(
            [sys.executable, "-m", "alertbridge", "send-test", "-c", str(config), "--receiver", name],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SECRET": SECRET, "ROBOT_KEY": ROBOT_KEY},
        )
        assert result.returncode == 0, result.stdout + result.stderr
    by_type = {m.msgtype: section(m) for m in wecom.messages()}
    assert set(by_type) == {"textcard", "news", "template_card", "markdown_v2"}
    assert by_type["textcard"]["description"].startswith("【测试】")
    assert by_type["news"]["articles"][0]["description"].startswith("【测试】")
    assert by_type["template_card"]["sub_title_text"].startswith("【测试】")
    assert by_type["markdown_v2"]["content"].startswith("【测试】")
    for message in wecom.messages():
        assert_within_limits(message)


def test_a_group_without_a_link_reaches_a_textcard_receiver_as_markdown(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    """A card needs a url: with no runbook, graph, panel or external URL the
    group still arrives, as the receiver's markdown fallback."""
    wecom = FakeWeCom(apps=[FakeApp(CORP_ID, SECRET, AGENT_ID)], robot_keys=[ROBOT_KEY])
    receivers: dict[str, object] = {"cards": receiver_section("app", "textcard", {})}
    base_url = serve_app(msgtype_config(tmp_path, serve_wecom(wecom), receivers))
    linkless = {**FIRING, "externalURL": "", "alerts": [{**a, "generatorURL": ""} for a in FIRING["alerts"]]}
    post(base_url, "/alertmanager/cards", linkless)
    wait_until(lambda: len(wecom.messages()) == 1, what="the fallback message")
    [message] = wecom.messages()
    assert message.msgtype == "markdown" and "api-2:9100" in (message.content or "")


def test_a_repeat_mark_shows_in_cards_and_news_within_their_limits() -> None:
    """``mark_card``: where each structured type shows the re-send's mark."""
    full = "描" * 170 + "ab"  # 512 bytes
    article = {"title": "t", "description": full, "url": "https://x.example/"}
    textcard = mark_card("textcard", {**article, "btntxt": "详情"}, "（重复）")
    assert textcard["description"].startswith("（重复）") and utf8(textcard["description"]) <= 512
    news = mark_card("news", {"articles": [article, article]}, "(repeat) ")
    first, second = news["articles"]
    assert first["description"].startswith("(repeat) ") and utf8(first["description"]) <= 512
    assert second == article
    card = mark_card("template_card", {"card_type": "text_notice", "sub_title_text": "x" * 120}, "（重复）")
    assert card["sub_title_text"].startswith("（重复）") and len(card["sub_title_text"]) <= 120
