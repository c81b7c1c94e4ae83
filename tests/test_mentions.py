"""@mentions and extra recipients from alert labels: mapping, storage, robot bodies,
markdown mentions within the byte limit, and a dispatcher → robot → fake WeCom run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from alertbridge.config import Config
from alertbridge.delivery import Dispatcher
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers.console import ConsoleReceiver
from alertbridge.messengers.registry import byte_limit
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import AppReceiver, MentionConfig, RobotReceiver
from alertbridge.messengers.wecom.mentions import (
    MAX_MENTIONS,
    People,
    content_mentions,
    people_for,
)
from alertbridge.messengers.wecom.robot import RobotChannel, build_robot_body
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.render import Renderer
from alertbridge.stores import DeliveryStatus, NewDelivery
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.testing.fake_wecom import WEBHOOK_SEND, FakeWeCom
from tests.config_builder import build_config
from tests.delivery_wiring import dispatcher as wired_dispatcher
from tests.delivery_wiring import group_tracker
from tests.wecom_identity import ROBOT_KEY

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 29, 15, 13, 53, tzinfo=UTC)
ROBOT_MARKDOWN_LIMIT = byte_limit("robot", "markdown")


def alert(
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    *,
    status: Status = Status.FIRING,
    index: int = 0,
) -> Alert:
    return Alert(
        status=status,
        labels=MappingProxyType({"alertname": "DiskFull", "instance": f"db-{index}", **(labels or {})}),
        annotations=MappingProxyType(dict(annotations or {})),
        starts_at=NOW - timedelta(minutes=5),
        ends_at=None if status is Status.FIRING else NOW,
        fingerprint=f"{index:016x}",
    )


def group(*alerts: Alert) -> AlertGroup:
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED,
        group_key='{}:{alertname="DiskFull"}',
        alerts=alerts,
        group_labels=MappingProxyType({"alertname": "DiskFull"}),
    )


MAPPING = MentionConfig(
    keys=["owner", "team"],
    users={"dba": ["zhangsan", "lisi"], "sre": ["wangwu"], "web team": ["zhaoliu"], "qa": ["lisi"]},
    mobiles={"dba": ["13800000001"], "sre": ["13800000002"], "oncall": ["13800000009"]},
)


# ---- people_for ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        pytest.param([alert()], People(), id="no-key"),
        pytest.param([alert({"owner": "dba"})], People(("zhangsan", "lisi"), ("13800000001",)), id="label"),
        pytest.param(
            [alert(annotations={"owner": "sre"})], People(("wangwu",), ("13800000002",)), id="annotation"
        ),
        pytest.param(
            [alert({"owner": "dba"}, {"owner": "sre"})],
            People(("zhangsan", "lisi"), ("13800000001",)),
            id="label-beats-annotation",
        ),
        pytest.param(
            [alert({"team": "sre"}, {"owner": "dba"})],
            People(("zhangsan", "lisi"), ("13800000001",)),
            id="first-key-wins-even-as-annotation",
        ),
        pytest.param(
            [alert({"owner": "dba", "team": "sre"})],
            People(("zhangsan", "lisi"), ("13800000001",)),
            id="only-the-first-key-present",
        ),
        pytest.param(
            [alert({"owner": "", "team": "sre"})], People(("wangwu",), ("13800000002",)), id="empty-is-absent"
        ),
        pytest.param(
            [alert({"owner": "sre, dba"})],
            People(("wangwu", "zhangsan", "lisi"), ("13800000002", "13800000001")),
            id="comma-list",
        ),
        pytest.param(
            [alert({"owner": "qa  dba"})], People(("lisi", "zhangsan"), ("13800000001",)), id="space-list"
        ),
        pytest.param([alert({"owner": "web team"})], People(("zhaoliu",)), id="whole-value-before-split"),
        pytest.param([alert({"owner": "oncall"})], People((), ("13800000009",)), id="mobile-only"),
        pytest.param([alert({"owner": "nobody"})], People(), id="unmapped"),
        pytest.param(
            [alert({"owner": "nobody,sre"})], People(("wangwu",), ("13800000002",)), id="unmapped-in-list"
        ),
        pytest.param(
            [
                alert({"owner": "dba"}, index=1),
                alert({"owner": "qa"}, index=2),
                alert({"owner": "dba"}, index=3),
            ],
            People(("zhangsan", "lisi"), ("13800000001",)),
            id="dedup-across-alerts",
        ),
        pytest.param(
            [
                alert({"owner": "dba"}, status=Status.RESOLVED, index=1),
                alert({"owner": "sre"}, index=2),
            ],
            People(("wangwu",), ("13800000002",)),
            id="firing-only",
        ),
        pytest.param(
            [
                alert({"owner": "dba"}, status=Status.RESOLVED, index=1),
                alert({"owner": "sre"}, status=Status.RESOLVED, index=2),
            ],
            People(("zhangsan", "lisi", "wangwu"), ("13800000001", "13800000002")),
            id="all-resolved-uses-all",
        ),
    ],
)
def test_people_for(alerts: Sequence[Alert], expected: People) -> None:
    assert people_for(group(*alerts), MAPPING) == expected


def test_statics_come_first_and_dedup_with_mapped() -> None:
    config = MAPPING.model_copy(
        update={"static_users": ["lisi", "boss"], "static_mobiles": ["13800000001", "13900000000"]}
    )
    assert people_for(group(alert({"owner": "dba"})), config) == People(
        ("lisi", "boss", "zhangsan"), ("13800000001", "13900000000")
    )
    # Statics apply with no keys at all.
    only_static = MentionConfig(static_users=["boss"], all=True)
    assert people_for(group(alert()), only_static) == People(("boss",), (), True)


def test_all_flag_passes_through() -> None:
    assert people_for(group(alert()), MentionConfig(all=True)) == People(all=True)
    assert people_for(group(alert({"owner": "sre"})), MAPPING.model_copy(update={"all": True})).all


def test_mentions_are_capped_at_wecom_limit_keeping_statics() -> None:
    config = MentionConfig(
        keys=["owner"],
        users={f"t{i}": [f"user{i}"] for i in range(150)},
        mobiles={f"t{i}": [f"139{i:08d}"] for i in range(150)},
        static_users=["boss"],
    )
    alerts = [alert({"owner": f"t{i}"}, index=i) for i in range(150)]
    people = people_for(group(*alerts), config)
    assert len(people.users) == MAX_MENTIONS == 100 and people.users[0] == "boss"
    assert people.users[1:] == tuple(f"user{i}" for i in range(99))
    assert len(people.mobiles) == MAX_MENTIONS


def test_unmapped_values_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="alertbridge.messengers.wecom.mentions")
    people_for(group(alert({"owner": "ghosts"})), MAPPING)
    assert any("ghosts" in r.getMessage() and r.levelname == "DEBUG" for r in caplog.records)


# ---- recipients_for and Recipients ----------------------------------------------


def test_recipients_for_app_adds_mapped_users_to_to_user() -> None:
    receiver = AppReceiver(
        channel="app",
        app="ops",
        to_user=["lisi", "boss"],
        to_party=["2"],
        to_tag=["7"],
        extra_recipients=MAPPING.model_copy(update={"all": True}),
    )
    recipients = receiver.recipients_for(group(alert({"owner": "dba"})))
    # Mobiles and @all do not apply to apps.
    assert recipients == Recipients(to_user=("lisi", "boss", "zhangsan"), to_party=("2",), to_tag=("7",))
    plain = AppReceiver(channel="app", app="ops", to_party=["2"])
    assert plain.recipients_for(group(alert({"owner": "dba"}))) == Recipients(to_party=("2",))


def test_recipients_for_robot_mentions() -> None:
    receiver = RobotReceiver(
        channel="robot", robot_key=SecretStr("k"), mention=MAPPING.model_copy(update={"all": True})
    )
    assert receiver.recipients_for(group(alert({"owner": "dba"}))) == Recipients(
        mention_users=("zhangsan", "lisi"), mention_mobiles=("13800000001",), mention_all=True
    )
    silent = RobotReceiver(channel="robot", robot_key=SecretStr("k"))
    assert silent.recipients_for(group(alert({"owner": "dba"}))) == Recipients()


def test_recipients_for_console_is_empty() -> None:
    assert ConsoleReceiver(channel="console").recipients_for(group(alert({"owner": "dba"}))) == Recipients()


def test_recipients_round_trip_and_read_old_rows() -> None:
    full = Recipients(
        to_user=("a",), mention_users=("zhangsan",), mention_mobiles=("13800000001",), mention_all=True
    )
    assert Recipients.from_dict(full.to_dict()) == full
    # App rows keep their old form; rows stored before mentions still load.
    app = Recipients(to_user=("a", "b"), to_party=("1",))
    assert app.to_dict() == {"to_user": ["a", "b"], "to_party": ["1"], "to_tag": []}
    assert Recipients.from_dict({"to_user": ["a", "b"], "to_party": ["1"], "to_tag": []}) == app
    assert Recipients.from_dict({}) == Recipients()


# ---- robot bodies -------------------------------------------------------------------


MENTIONING = Recipients(
    mention_users=("zhangsan", "lisi"), mention_mobiles=("13800000001",), mention_all=True
)


def test_robot_text_body_carries_mentions() -> None:
    body = build_robot_body(RenderedMessage("text", "告警", 2048), MENTIONING)
    assert body == {
        "msgtype": "text",
        "text": {
            "content": "告警",
            "mentioned_list": ["zhangsan", "lisi", "@all"],
            "mentioned_mobile_list": ["13800000001"],
        },
    }
    only_all = build_robot_body(RenderedMessage("text", "x", 2048), Recipients(mention_all=True))
    assert only_all["text"] == {"content": "x", "mentioned_list": ["@all"]}


def test_robot_text_mentions_only_on_the_last_part() -> None:
    first = build_robot_body(RenderedMessage("text", "a", 2048, part=1, parts=2), MENTIONING)
    last = build_robot_body(RenderedMessage("text", "b", 2048, part=2, parts=2), MENTIONING)
    assert first == {"msgtype": "text", "text": {"content": "a"}}
    assert last["text"]["mentioned_list"] == ["zhangsan", "lisi", "@all"]  # type: ignore[index]


def test_robot_markdown_body_has_no_mention_lists_and_no_mentions_is_plain() -> None:
    markdown = build_robot_body(RenderedMessage("markdown", "x\n<@zhangsan>", 4096), MENTIONING)
    assert markdown == {"msgtype": "markdown", "markdown": {"content": "x\n<@zhangsan>"}}
    assert build_robot_body(RenderedMessage("text", "x", 2048), Recipients()) == {
        "msgtype": "text",
        "text": {"content": "x"},
    }


def test_content_mentions_only_for_robot_markdown_and_only_userids() -> None:
    recipients = Recipients(
        mention_users=("zhangsan", "@all", "lisi"), mention_mobiles=("1",), mention_all=True
    )
    assert content_mentions(recipients, "robot", "markdown") == ["<@zhangsan>", "<@lisi>"]
    assert content_mentions(recipients, "robot", "text") == []
    assert content_mentions(recipients, "app", "markdown") == []
    assert content_mentions(recipients, "console", "markdown") == []


# ---- markdown mentions through the renderer ------------------------------------------


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(timezone=SHANGHAI)


def render_robot(
    renderer: Renderer, grp: AlertGroup, mentions: Sequence[str], language: str = "zh"
) -> list[RenderedMessage]:
    return renderer.render(
        grp,
        template="default",
        language=language,
        msgtype="markdown",
        channel="robot",
        now=NOW,
        ref=3,
        mentions=mentions,
    )


def test_markdown_ends_with_the_mentions(renderer: Renderer) -> None:
    [message] = render_robot(renderer, group(alert({"owner": "dba"})), ["<@zhangsan>", "<@lisi>"])
    assert message.content.endswith("\n<@zhangsan> <@lisi>")
    [plain] = render_robot(renderer, group(alert({"owner": "dba"})), [])
    assert message.content == plain.content + "\n<@zhangsan> <@lisi>"


def test_a_message_that_just_fits_splits_rather_than_overflow(renderer: Renderer) -> None:
    # The largest group that fits one message without mentions: the mention
    # line no longer fits with it, so the group splits and every part fits.
    alerts = [alert({"note": "磁" * 40}, index=i) for i in range(200)]
    size = 1
    while len(render_robot(renderer, group(*alerts[: size + 1]), [])) == 1:
        size += 1
    mentions = [f"<@user{i:02d}>" for i in range(40)]  # 400 bytes: more than one alert
    messages = render_robot(renderer, group(*alerts[:size]), mentions)
    assert len(messages) == 2
    assert all(m.byte_count <= ROBOT_MARKDOWN_LIMIT for m in messages)
    assert messages[-1].content.endswith("\n" + " ".join(mentions))
    assert "<@" not in messages[0].content


def test_mention_line_is_capped_to_a_quarter_of_the_limit(
    renderer: Renderer, caplog: pytest.LogCaptureFixture
) -> None:
    mentions = [f"<@user-with-a-long-id-{i:03d}>" for i in range(100)]  # 28 bytes each
    [message] = render_robot(renderer, group(alert()), mentions)
    line = message.content.rsplit("\n", 1)[1]
    assert line.startswith("<@user-with-a-long-id-000>")
    assert len(("\n" + line).encode()) <= ROBOT_MARKDOWN_LIMIT // 4
    assert 0 < line.count("<@") < 100
    assert "mentions_left_out" in caplog.text


def test_a_template_that_places_mentions_itself_gets_no_extra_line(tmp_path: Path) -> None:
    (tmp_path / "own.markdown.j2").write_text(
        "{{ alerts | length }} alerts{% if part == parts %} cc {{ mentions | join(',') }}{% endif %}"
    )
    (tmp_path / "base.markdown.j2").write_text("{% block body %}{% endblock %} / {{ mentions | join(' ') }}")
    (tmp_path / "child.markdown.j2").write_text(
        '{% extends "base.markdown.j2" %}{% block body %}child{% endblock %}'
    )
    custom = Renderer(timezone=SHANGHAI, templates_dir=tmp_path)
    grp = group(alert())
    for template, expected in (("own", "1 alerts cc <@a>,<@b>"), ("child", "child / <@a> <@b>")):
        [message] = custom.render(
            grp,
            template=template,
            language="zh",
            msgtype="markdown",
            channel="robot",
            now=NOW,
            mentions=["<@a>", "<@b>"],
        )
        assert message.content == expected


def test_check_renders_with_mentions(renderer: Renderer) -> None:
    renderer.check("default", "zh", "markdown")
    renderer.check("default", "en", "markdown")


_SAFE_TEXT = st.text(alphabet=st.sampled_from("abcxyz 0123_-告警磁盘满😀\n"), min_size=0, max_size=300)


@st.composite
def huge_groups(draw: st.DrawFn) -> AlertGroup:
    count = draw(st.integers(min_value=1, max_value=120))
    alerts = [
        alert(
            {"note": draw(_SAFE_TEXT)},
            {"description": draw(_SAFE_TEXT)},
            status=draw(st.sampled_from(Status)),
            index=i,
        )
        for i in range(count)
    ]
    return group(*alerts)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    huge_groups(),
    st.lists(st.from_regex(r"[a-z][a-z0-9]{0,30}", fullmatch=True), min_size=1, max_size=100, unique=True),
    st.sampled_from(["zh", "en"]),
)
def test_mentions_fit_and_appear_once_on_the_last_part(
    renderer: Renderer, grp: AlertGroup, users: list[str], language: str
) -> None:
    mentions = [f"<@{u}>" for u in users]
    messages = render_robot(renderer, grp, mentions, language)
    event(f"parts: {'1' if len(messages) == 1 else '2+'}")
    assert all(m.byte_count <= ROBOT_MARKDOWN_LIMIT for m in messages)
    *earlier, last = messages
    assert all("<@" not in m.content for m in earlier)
    line = last.content.rsplit("\n", 1)[1]
    kept = line.split(" ")
    assert kept == mentions[: len(kept)] and kept  # a prefix, never cut inside a mention
    for mention in kept:
        assert "".join(m.content for m in messages).count(mention) == 1


# ---- end to end: dispatcher → RobotChannel → fake WeCom over HTTP -------------------------


def e2e_config(tmp_path: Path, api_base: str) -> Config:
    mention = {
        "keys": ["owner"],
        "users": {"dba": ["zhangsan", "lisi"]},
        "mobiles": {"dba": ["13800000001"]},
        "all": True,
    }
    return build_config(
        tmp_path / "alertbridge.db",
        wecom={"api_base": api_base, "timeout": "3s"},
        receivers={
            "md": {"channel": "robot", "robot_key": ROBOT_KEY, "msgtype": "markdown", "mention": mention},
            "txt": {"channel": "robot", "robot_key": ROBOT_KEY, "msgtype": "text", "mention": mention},
        },
    )


@pytest.fixture
async def wired(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str], outbox: SqliteOutboxStore, state: SqliteStateStore
) -> AsyncIterator[tuple[Config, Dispatcher, SqliteOutboxStore]]:
    config = e2e_config(tmp_path, fake_wecom[1])
    async with httpx.AsyncClient(timeout=5) as http:
        client = WeComClient(http, config.wecom.api_base)
        channel = RobotChannel(client, SecretStr(ROBOT_KEY))
        dispatcher = wired_dispatcher(
            config,
            outbox,
            {"md": channel, "txt": channel},
            group_tracker(config, state, client),
            clock=lambda: NOW,
        )
        yield config, dispatcher, outbox


async def deliver(config: Config, dispatcher: Dispatcher, outbox: SqliteOutboxStore, receiver: str) -> None:
    grp = group(alert({"owner": "dba"}), alert({"owner": "nobody"}, index=1))
    recipients = config.receivers[receiver].recipients_for(grp)
    await outbox.enqueue(
        NewDelivery(
            receiver=receiver,
            channel="robot",
            recipients=recipients,
            group=grp,
            request_id=f"req-{receiver}",
            accepted_at=NOW,
        )
    )
    for delivery in await outbox.claim_due(NOW, 10, timedelta(minutes=10)):
        assert delivery.recipients == recipients  # stored and read back whole
        await dispatcher.deliver(delivery)
    assert [row.status for row in await outbox.list()] == [DeliveryStatus.SENT]


async def test_e2e_text_robot_mentions(wired, fake_wecom: tuple[FakeWeCom, str]) -> None:  # type: ignore[no-untyped-def]
    await deliver(*wired, "txt")
    [sent] = fake_wecom[0].messages(WEBHOOK_SEND)
    assert sent.msgtype == "text"
    assert sent.mentioned == ("zhangsan", "lisi", "@all")
    assert sent.mentioned_mobiles == ("13800000001",)
    assert "<@" not in (sent.content or "")


async def test_e2e_markdown_robot_mentions_in_content(wired, fake_wecom: tuple[FakeWeCom, str]) -> None:  # type: ignore[no-untyped-def]
    await deliver(*wired, "md")
    [sent] = fake_wecom[0].messages(WEBHOOK_SEND)
    assert sent.msgtype == "markdown"
    content = sent.content or ""
    # Markdown has no @all or mobile syntax: only the userids, once, at the end.
    assert content.endswith("\n<@zhangsan> <@lisi>")
    assert content.count("<@zhangsan>") == 1 and "@all" not in content and "13800000001" not in content
    assert "mentioned_list" not in sent.body["markdown"]
