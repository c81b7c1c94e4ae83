"""``on_resolve = "recall"``: when a group resolves, its firing messages are
recalled (``message/recall``, within WeCom's 24 h) and the resolved message
is sent, so the chat shows the current state rather than a stale alarm.

The msgids are kept in the state store and the recall is part of the durable
resolution work: it survives a restart and is never repeated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alertbridge.config import Config, parse_config
from alertbridge.errors import ConfigError, PermanentDeliveryError
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.messenger import WeComMessenger
from alertbridge.stores.postgres import postgres_stores
from alertbridge.stores.sqlite import SqliteStateStore
from alertbridge.stores.state import ResolutionState, SentMessage
from alertbridge.testing.fake_wecom import (
    MESSAGE_RECALL,
    MESSAGE_SEND,
    FakeApp,
    FakeWeCom,
    Fault,
    ManualClock,
)
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.server import SwappableApp
from tests.callback_bridge import Bridge
from tests.dispatch_rig import rig_for, storm_group
from tests.harness import wait_until
from tests.test_card_resolution import on_tracker_clock, resolved, upkeep_decides
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

DATA = Path(__file__).parent / "data"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RESOLVED = json.loads((DATA / "alertmanager" / "resolved.json").read_text("utf-8"))


def ops_config(base_url: str, db: Path, receivers: dict[str, dict[str, object]]) -> Config:
    """A config of the app "ops" (the test identity, no callback) and ``receivers``."""
    return parse_config(
        {
            "server": {"language": "zh"},
            "store": {"url": f"sqlite:///{db}"},
            "wecom": {
                "api_base": base_url,
                "apps": {"ops": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET}},
            },
            "receivers": receivers,
        },
        {},
        "test.toml",
    )


def recall_config(base_url: str, db: Path) -> Config:
    receiver = {"channel": "app", "app": "ops", "to_user": ["zhaoliu"], "on_resolve": "recall"}
    return ops_config(base_url, db, {"oncall": receiver})


def shown_to(fake: FakeWeCom, user: str) -> list[str]:
    return [m.content or "" for m in fake.messages(MESSAGE_SEND) if user in m.to_user]


def test_a_resolution_recalls_the_firing_message_and_sends_the_resolved_one(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    wecom_url = serve_wecom(wecom)
    config = recall_config(wecom_url, tmp_path / "ab.db")
    bridge = Bridge(serve_app(config), wecom, tmp_path / "ab.db")
    bridge.post_alert("oncall")
    wait_until(lambda: len(shown_to(wecom, "zhaoliu")) == 1, what="the firing message")
    firing = wecom.messages(MESSAGE_SEND)[0]

    bridge.post_alert("oncall", RESOLVED)
    wait_until(lambda: bridge.pending_deliveries() == 0 and len(wecom.recall.recalled()) == 1, what="recall")
    assert [m.msgid for m in wecom.recall.recalled()] == [firing.msgid]
    assert [m["msgid"] for m in httpx.get(f"{wecom_url}/_fake/recalled").json()] == [firing.msgid]
    wait_until(lambda: len(shown_to(wecom, "zhaoliu")) == 1, what="the resolved message")
    (shown,) = shown_to(wecom, "zhaoliu")
    assert "恢复" in shown and shown != firing.content


async def test_a_restart_between_the_steps_recalls_once_and_still_sends_the_resolved_message(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    """The resolution is recorded, then the process dies: the next one's
    upkeep recalls the firing message, its delivery sends the resolved
    message; a second upkeep afterwards recalls nothing more."""
    config = recall_config(wecom_slot[1], tmp_path / "d.db")
    group = storm_group(1)
    async with rig_for(config, rig_wecom, rig_clock) as rig:
        on_tracker_clock(rig)
        await rig.enqueue("oncall", group)
        await rig.drain()
        delivery_id = await rig.enqueue("oncall", resolved(group))
        await rig.drain()
        pending = await rig.state.get_resolution(delivery_id)
        assert pending is not None and pending.state is ResolutionState.PENDING
        assert rig_wecom.recall.recalled() == []
    (firing,) = rig_wecom.messages(MESSAGE_SEND)

    async with rig_for(config, rig_wecom, rig_clock) as rig:
        tracker = on_tracker_clock(rig)
        # The resolved message is sent after the recall: the outcome says "send one".
        assert await upkeep_decides(tracker, rig, delivery_id) is ResolutionState.FAILED
        rig_clock.advance(2)
        await rig.drain()
        assert [m.msgid for m in rig_wecom.recall.recalled()] == [firing.msgid]
        (resolved_message,) = rig_wecom.messages(MESSAGE_SEND)
        assert resolved_message.msgid != firing.msgid
        assert rig_wecom.request_count("message/recall") == 1

    async with rig_for(config, rig_wecom, rig_clock) as rig:
        upkeep = asyncio.create_task(on_tracker_clock(rig).run_upkeep())
        await asyncio.sleep(0.3)
        upkeep.cancel()
        await asyncio.gather(upkeep, return_exceptions=True)
    assert rig_wecom.request_count("message/recall") == 1


async def test_messages_older_than_24_hours_are_not_recalled(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    """WeCom recalls only for 24 h: an older message is left as it is (and
    forgotten); a fresh one of the same group is recalled."""
    fake, base_url = fake_wecom
    config = recall_config(base_url, tmp_path / "d.db")
    state = SqliteStateStore(tmp_path / "d.db")
    await state.open()
    sent = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    now = sent
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            client = WeComClient(http, base_url)
            messenger = WeComMessenger(config=config, client=client, state=state, clock=lambda: now)
            receiver = config.receivers["oncall"]
            group = storm_group(1)
            ref = (
                await state.record_notification("oncall", group, receiver.recipients_for(group), sent)
            ).ref.ref
            app = config.wecom.apps["ops"]
            msgids = []
            for text in ("old", "fresh"):
                body = {"touser": "zhaoliu", "msgtype": "text", "text": {"content": text}}
                msgids.append((await client.send_app_message("ops", app, body)).msgid)
            await state.save_sent_message(SentMessage(msgids[0], ref, "ops", sent - timedelta(hours=25)))
            await state.save_sent_message(SentMessage(msgids[1], ref, "ops", sent - timedelta(hours=1)))
            assert await messenger.has_resolution_work(ref, receiver)
            assert not await messenger.on_resolved(ref, "oncall", receiver)
    finally:
        await state.close()
    assert [m.msgid for m in fake.recall.recalled()] == [msgids[1]]
    assert shown_to(fake, "zhaoliu") == ["old"]
    assert fake.request_count("message/recall") == 1


async def test_the_fake_refuses_a_recall_after_24_hours_or_twice() -> None:
    wall = ManualClock(1_700_000_000.0)
    fake = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)], wall_clock=wall)
    with fake.serve() as base_url:
        async with httpx.AsyncClient(timeout=5) as http:
            client = WeComClient(http, base_url)
            config = recall_config(base_url, Path("unused.db"))
            app = config.wecom.apps["ops"]
            body = {"touser": "zhaoliu", "msgtype": "text", "text": {"content": "x"}}
            first = (await client.send_app_message("ops", app, body)).msgid
            await client.recall_message("ops", app, first)
            with pytest.raises(PermanentDeliveryError):
                await client.recall_message("ops", app, first)
            with pytest.raises(PermanentDeliveryError):
                await client.recall_message("ops", app, "no-such-msgid")
            late = (await client.send_app_message("ops", app, {**body, "text": {"content": "y"}})).msgid
            wall.advance(24 * 3600)
            with pytest.raises(PermanentDeliveryError):
                await client.recall_message("ops", app, late)
    assert [m.content for m in fake.messages(MESSAGE_SEND)] == ["y"]


@pytest.mark.parametrize(
    ("receiver", "mode"),
    [
        ({"channel": "robot", "robot_key": "k"}, "recall"),
        ({"channel": "robot", "robot_key": "k"}, "update"),
        ({"channel": "app", "app": "ops", "to_user": ["u"], "msgtype": "markdown"}, "update"),
    ],
)
def test_an_on_resolve_the_channel_cannot_do_is_a_config_error(
    receiver: dict[str, object], mode: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "wecom": {"apps": {"ops": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET}}},
                "receivers": {"x": {**receiver, "on_resolve": mode}},
            },
            {},
            "alerts.toml",
        )
    assert "alerts.toml" in str(caught.value) and "receivers.x.on_resolve" in str(caught.value)


async def test_two_replicas_recalling_one_group_recall_each_message_once(
    tmp_path: Path, postgres: PostgresServer, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    """Two replicas' messengers on one PostgreSQL work the same group's recall
    at once (a hold ran out, say): WeCom gets one recall per message."""
    fake, base_url = fake_wecom
    config = recall_config(base_url, tmp_path / "unused.db")
    url = postgres.create_database()
    replicas = [
        postgres_stores(url, replica=name, dedup_window=timedelta(0), pool_size=4) for name in ("a", "b")
    ]
    for stores in replicas:
        await stores.outbox.open()
        await stores.state.open()
    try:
        state = replicas[0].state
        receiver = config.receivers["oncall"]
        group = storm_group(1)
        ref = (await state.record_notification("oncall", group, receiver.recipients_for(group), T0)).ref.ref
        async with httpx.AsyncClient(timeout=5) as http:
            client = WeComClient(http, base_url)
            app = config.wecom.apps["ops"]
            for number in range(6):
                body = {"touser": "zhaoliu", "msgtype": "text", "text": {"content": f"m{number}"}}
                msgid = (await client.send_app_message("ops", app, body)).msgid
                await state.save_sent_message(SentMessage(msgid, ref, "ops", T0))
            messengers = [
                WeComMessenger(config=config, client=client, state=stores.state, clock=lambda: T0)
                for stores in replicas
            ]
            await asyncio.gather(*(m.on_resolved(ref, "oncall", receiver) for m in messengers))
    finally:
        for stores in replicas:
            await stores.state.close()
            await stores.outbox.close()
    assert fake.request_count("message/recall") == 6
    assert len(fake.recall.recalled()) == 6 and shown_to(fake, "zhaoliu") == []


async def test_a_recall_wecom_could_not_do_for_now_is_kept_for_the_next_resolution(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    """WeCom answers "system busy" (-1): the message stays on record, so the
    group's next resolution recalls it; a refused recall (unknown msgid) is forgotten."""
    fake, base_url = fake_wecom
    config = recall_config(base_url, tmp_path / "d.db")
    state = SqliteStateStore(tmp_path / "d.db")
    await state.open()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            client = WeComClient(http, base_url)
            messenger = WeComMessenger(config=config, client=client, state=state, clock=lambda: T0)
            receiver = config.receivers["oncall"]
            group = storm_group(1)
            ref = (
                await state.record_notification("oncall", group, receiver.recipients_for(group), T0)
            ).ref.ref
            body = {"touser": "zhaoliu", "msgtype": "text", "text": {"content": "firing"}}
            msgid = (await client.send_app_message("ops", config.wecom.apps["ops"], body)).msgid
            kept = SentMessage(msgid, ref, "ops", T0 - timedelta(minutes=1))  # recalled first
            await state.save_sent_message(kept)
            await state.save_sent_message(SentMessage("unknown-msgid", ref, "ops", T0))

            fake.add_fault(MESSAGE_RECALL, Fault(errcode=-1))
            await messenger.on_resolved(ref, "oncall", receiver)
            assert await state.sent_messages_for_ref(ref) == [kept]
            assert shown_to(fake, "zhaoliu") == ["firing"]

            await messenger.on_resolved(ref, "oncall", receiver)
            assert await state.sent_messages_for_ref(ref) == []
    finally:
        await state.close()
    assert shown_to(fake, "zhaoliu") == [] and [m.msgid for m in fake.recall.recalled()] == [msgid]
