"""Untrusted alert text cannot stop delivery or inject markup: control characters,
absurd times, URL fields, markdown and text-message markup.

Messages are sent over real HTTP to the fake WeCom, which refuses what WeCom
refuses (``\\uXXXX`` escapes: 40033).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers.wecom.app import AppChannel
from alertbridge.messengers.wecom.card import build_alert_card, task_id_for
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import ButtonConfig, WeComAppConfig
from alertbridge.messengers.wecom.robot import RobotChannel
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.render import Renderer
from alertbridge.render.digest import DigestSection
from alertbridge.render.sanitize import clean_text, safe_url
from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, FakeApp, FakeWeCom
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

APP = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr(SECRET))
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
DIRTY = "\x1b[31mERROR\x1b[0m\x00 at\x07 \x7f\x85\x9b end\r\nnext"


def dirty_group() -> AlertGroup:
    """Control characters in every kind of field a template shows."""
    alert = Alert(
        status=Status.FIRING,
        labels=MappingProxyType(
            {
                "alertname": "Log\x1b[31mError",
                "instance": "web-1\x00",
                "severity": "crit\x1bical",
                "x\x01": "y",
            }
        ),
        annotations=MappingProxyType(
            {"summary": DIRTY, "description": DIRTY, "runbook_url": "http://x/\x1b"}
        ),
        starts_at=NOW - timedelta(minutes=5),
        ends_at=None,
        fingerprint="f00d",
        generator_url="http://prom:9090/graph?g0.expr=up\x1b",
        value_string="[ var='A' value=\x1b1 ]",
    )
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key="{}:{}",
        alerts=(alert,),
        group_labels=MappingProxyType({"alertname": "Log\x1b[31mError"}),
        common_labels=alert.labels,
        common_annotations=MappingProxyType({"summary": DIRTY}),
        external_url="http://am:9093",
    )


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY], users=["alice"])


@pytest.fixture
async def client(wecom_url: str) -> AsyncIterator[WeComClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield WeComClient(http, wecom_url)


def _renderer() -> Renderer:
    return Renderer(timezone=TZ)


def _no_controls(text: str) -> None:
    assert not any((ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_control_characters_in_every_default_template_are_accepted_by_wecom(
    client: WeComClient, fake: FakeWeCom, language: str
) -> None:
    group = dirty_group()
    renderer = _renderer()
    app = AppChannel(client, "ops", APP)
    robot = RobotChannel(client, SecretStr(ROBOT_KEY))
    to_alice = Recipients(to_user=("alice",))
    sent: list[RenderedMessage] = []
    for msgtype in ("text", "markdown"):
        for channel, target in (("app", app), ("robot", robot)):
            messages = renderer.render(
                group, template="default", language=language, msgtype=msgtype, channel=channel, now=NOW, ref=9
            )
            digest = renderer.render_digest(
                [DigestSection(ref=9, group=group)],
                language=language,
                msgtype=msgtype,
                channel=channel,
                now=NOW,
            )
            for message in [*messages, *(part.message for part in digest)]:
                await target.send(message, to_alice if channel == "app" else Recipients())
                sent.append(message)
    card = build_alert_card(
        group,
        ref=9,
        ack=None,
        language=language,
        buttons=[ButtonConfig(action="ack")],
        task_id=task_id_for(9, 1),
        tz=TZ,
        now=NOW,
    )
    await app.send(card, to_alice)
    delivered = fake.messages(MESSAGE_SEND) + fake.messages(WEBHOOK_SEND)
    assert len(delivered) == len(sent) + 1 == 9
    for message in delivered:
        assert "\\u00" not in json.dumps(message.body, ensure_ascii=False)
        _no_controls(message.content or json.dumps(message.body.get("template_card"), ensure_ascii=False))
    markdown = next(m.content for m in sent if m.msgtype == "markdown")
    # Visible markers where the controls were; the surrounding text survives.
    assert "␛［31mERROR␛［0m␀ at␇ ␡\ufffd\ufffd end" in markdown
    assert "␀" in markdown


def test_clean_text_marks_each_kind_of_control_character() -> None:
    assert clean_text("a\x1bb\x00c\x7fd\x85e\tf\ng") == "a␛b␀c␡d\ufffde\tf\ng"
    assert clean_text("one\r\ntwo\rthree") == "one\ntwo\nthree"
    assert clean_text("plain 中文") == "plain 中文"


def test_safe_url_keeps_only_http_and_encodes_markup() -> None:
    assert safe_url("https://grafana/d/abc?x=1&y=%20") == "https://grafana/d/abc?x=1&y=%20"
    assert safe_url("javascript:alert(1)") == ""
    assert safe_url("data:text/html,<b>x</b>") == ""
    assert safe_url("/relative/path") == ""
    assert safe_url("http:///nohost") == ""
    assert safe_url('http://h/a b\n<@zhangsan>(x)[y]"') == "http://h/a%20b%0A%3C@zhangsan%3E%28x%29%5By%5D%22"
    assert safe_url("  http://h/trailing\n") == "http://h/trailing"


# ---- times --------------------------------------------------------------------

ABSURD_TIMES = [
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime.fromisoformat("0001-01-01T00:00:00+14:00"),
    datetime(1, 1, 1, tzinfo=UTC),  # Go's zero time
]


def _timed_group(starts_at: datetime, ends_at: datetime | None) -> AlertGroup:
    alert = Alert(
        status=Status.FIRING if ends_at is None else Status.RESOLVED,
        labels=MappingProxyType({"alertname": "Clock", "instance": "web-1"}),
        annotations=MappingProxyType({"summary": "时间异常"}),
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint="c10c",
    )
    return AlertGroup(
        source="alertmanager",
        status=alert.status,
        group_key="{}:{}",
        alerts=(alert,),
        common_labels=alert.labels,
    )


@pytest.mark.parametrize("moment", ABSURD_TIMES, ids=["year9999", "year1+14", "go-zero"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_absurd_times_render_as_unknown(moment: datetime, language: str) -> None:
    renderer = _renderer()
    for group in (_timed_group(moment, None), _timed_group(moment, moment), _timed_group(NOW, moment)):
        for msgtype in ("text", "markdown"):
            (message,) = renderer.render(
                group, template="default", language=language, msgtype=msgtype, channel="app", now=NOW
            )
            assert "—" in message.content
            assert "739" not in message.content and "0001" not in message.content
            assert "9999" not in message.content
        card = build_alert_card(
            group, ref=1, ack=None, language=language, buttons=[], task_id="t", tz=TZ, now=NOW
        )
        assert "739" not in card.content and "0001" not in card.content and "9999" not in card.content
    # A real start time still shows its duration.
    (message,) = renderer.render(
        _timed_group(NOW - timedelta(hours=2), None),
        template="default",
        language=language,
        msgtype="text",
        channel="app",
        now=NOW,
    )
    assert ("已持续 2小时" if language == "zh" else "firing for 2h") in message.content


# ---- URL fields and markup -----------------------------------------------------


def _hostile_group(source: str = "alertmanager") -> AlertGroup:
    alert = Alert(
        status=Status.FIRING,
        labels=MappingProxyType({"alertname": "Inject", "instance": "<@lisi>", "severity": "critical"}),
        annotations=MappingProxyType(
            {
                "summary": '<a href="http://evil.example">点我续费</a> <@wangwu>',
                "runbook_url": "data:text/html,x",
            }
        ),
        starts_at=NOW - timedelta(minutes=5),
        ends_at=None,
        fingerprint="bad1",
        generator_url="http://prom:9090/graph?g0.expr=up\n<@zhangsan>\n### injected heading",
        dashboard_url="javascript:alert(1)",
        panel_url="http://grafana/d/x?viewPanel=1 [evil](http://evil.example)",
        silence_url="javascript:alert(3)",
    )
    return AlertGroup(
        source=source,
        status=Status.FIRING,
        group_key="{}:{}",
        alerts=(alert,),
        group_labels=MappingProxyType({"alertname": "Inject"}),
        common_labels=alert.labels,
        external_url="javascript:alert(4)//",
    )


@pytest.mark.parametrize("source", ["alertmanager", "grafana"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_url_fields_cannot_inject_lines_mentions_or_scripts_into_robot_markdown(
    source: str, language: str
) -> None:
    group = _hostile_group(source)
    (message,) = _renderer().render(
        group, template="default", language=language, msgtype="markdown", channel="robot", now=NOW
    )
    content = message.content
    assert "<@" not in content  # neither from the URL's newline nor from label values
    assert "javascript" not in content and "data:" not in content
    assert not any(line.startswith("### injected") for line in content.splitlines())
    # The generator URL is kept, its newline and markup percent-encoded, as one link.
    assert "(http://prom:9090/graph?g0.expr=up%0A%3C@zhangsan%3E%0A###%20injected%20heading)" in content
    assert "viewPanel=1%20%5Bevil%5D%28http://evil.example%29)" in content


@pytest.mark.parametrize("language", ["zh", "en"])
def test_text_messages_show_no_clickable_html_links(language: str) -> None:
    renderer = _renderer()
    group = _hostile_group()
    (message,) = renderer.render(
        group, template="default", language=language, msgtype="text", channel="app", now=NOW
    )
    (digest,) = renderer.render_digest(
        [DigestSection(ref=3, group=group)], language=language, msgtype="text", channel="app", now=NOW
    )
    for content in (message.content, digest.message.content):
        assert "<a" not in content and "<@" not in content
        assert "javascript" not in content
    assert '＜a href="http://evil.example">点我续费＜/a>' in message.content
