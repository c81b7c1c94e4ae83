"""WeCom's rate limits, kept by the dispatcher: against the fake WeCom over real
HTTP, which drops app messages beyond 30/min per member silently and answers
45009 to a robot's 21st message in a minute — as WeCom does.

Time is a manual clock shared by the dispatcher, the client and the rig_wecom, so a
minute passes when the test says so. One-off messages (``alertbridge send``)
wait for a slot as alerts do, but are never merged into a digest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alertbridge.config import parse_config
from alertbridge.errors import ConfigError
from alertbridge.message import Recipients
from alertbridge.stores import DeliveryStatus, NewDelivery, OneOffMessage
from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, FakeWeCom, Fault, ManualClock
from alertbridge.testing.server import SwappableApp
from tests.dispatch_rig import MARKER, Rig, opened_rig, storm_group
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET


@pytest.fixture
async def rig(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> AsyncIterator[Rig]:
    async with opened_rig(wecom_slot, tmp_path / "a.db", rig_wecom, rig_clock) as rig:
        yield rig


async def test_under_budget_every_notification_goes_out_as_rendered(rig: Rig) -> None:
    for number in range(5):
        await rig.enqueue("oncall", storm_group(number))
    await rig.drain()
    texts = rig.texts_to("zhangsan")
    assert len(texts) == 5
    assert not any("告警汇总" in text for text in texts)
    assert rig.count("alertbridge_digests_sent_total") == 0 and rig.deferrals() == 0
    assert rig.fake.dropped() == []


async def test_a_storm_is_merged_into_digests_and_nothing_is_dropped(rig: Rig) -> None:
    for number in range(120):
        await rig.enqueue("oncall", storm_group(number, alerts=2))
    await rig.drain()
    assert rig.fake.dropped() == []
    texts = rig.texts_to("zhangsan")
    assert 1 < len(texts) <= 30
    assert all("告警汇总" in text for text in texts)
    assert all(len(text.encode()) <= 2048 for text in texts)
    # Every alert is visible, each with its group's reference.
    assert rig.markers_seen_by("zhangsan") == {
        f"storm-{n * 10 + i:04d}" for n in range(120) for i in range(2)
    }
    assert "#1 Storm0000" in texts[0] and any("#120 Storm0119" in text for text in texts)
    assert rig.count("alertbridge_digests_sent_total") == len(texts)
    sent = rig.metrics.registry.get_sample_value(
        "alertbridge_messages_sent_total", {"channel": "app", "receiver": "oncall", "outcome": "sent"}
    )
    assert sent == len(texts)
    latency = rig.metrics.registry.get_sample_value(
        "alertbridge_delivery_latency_seconds_count", {"channel": "app"}
    )
    assert latency == 120
    assert await rig.statuses() == {
        DeliveryStatus.PENDING: 0,
        DeliveryStatus.SENT: 120,
        DeliveryStatus.DEAD: 0,
    }


async def test_when_no_message_fits_the_backlog_waits_for_the_first_free_slot(rig: Rig) -> None:
    for number in range(30):
        await rig.enqueue("oncall", storm_group(number))
        await rig.drain()  # one at a time: each fits, each goes out as rendered
        rig.clock.advance(1)
    assert len(rig.texts_to("zhangsan")) == 30
    late = [await rig.enqueue("oncall", storm_group(100 + n)) for n in range(3)]
    await rig.drain()
    assert len(rig.texts_to("zhangsan")) == 30  # held back, not sent into WeCom's silent drop
    assert rig.deferrals() == 3
    (waiting,) = {d.next_attempt_at for d in await rig.outbox.list(DeliveryStatus.PENDING) if d.id in late}
    # The first send was at t=0 (answered at t=0): its slot frees a minute later.
    assert waiting == datetime(2026, 11, 29, 12, 1, tzinfo=UTC)
    rig.clock.advance(60 - 30)
    await rig.drain()
    # One slot: the three are merged into one digest rather than one sent and two waiting.
    texts = rig.texts_to("zhangsan")
    assert len(texts) == 31 and "告警汇总" in texts[-1]
    assert {"storm-1000", "storm-1010", "storm-1020"} <= rig.markers_seen_by("zhangsan")
    assert rig.fake.dropped() == []


async def test_receivers_sharing_a_member_share_the_budget(rig: Rig) -> None:
    for number in range(25):
        await rig.enqueue("oncall", storm_group(number))
        await rig.enqueue("dba", storm_group(500 + number))
    await rig.drain()
    assert rig.fake.dropped() == []
    assert len(rig.texts_to("zhangsan")) <= 30
    seen = rig.markers_seen_by("zhangsan")
    assert {f"storm-{n * 10:04d}" for n in range(25)} | {
        f"storm-{(500 + n) * 10:04d}" for n in range(25)
    } == seen
    assert {f"storm-{(500 + n) * 10:04d}" for n in range(25)} == rig.markers_seen_by("lisi")


async def test_a_robot_gets_at_most_twenty_a_minute_and_never_answers_45009(rig: Rig) -> None:
    for number in range(45):
        await rig.enqueue("room", storm_group(number))
        await rig.drain()
    robot = rig.fake.messages(WEBHOOK_SEND)
    assert len(robot) <= 20
    # Every call the fake answered was accepted: none got 45009.
    assert rig.fake.request_count(WEBHOOK_SEND) == len(robot)
    rig.clock.advance(61)
    await rig.drain()
    robot = rig.fake.messages(WEBHOOK_SEND)
    seen = {marker for m in robot for marker in MARKER.findall(m.content or "")}
    assert seen == {f"storm-{n * 10:04d}" for n in range(45)}
    assert await rig.statuses() == {
        DeliveryStatus.PENDING: 0,
        DeliveryStatus.SENT: 45,
        DeliveryStatus.DEAD: 0,
    }


async def test_the_budget_survives_a_restart(rig: Rig) -> None:
    for number in range(30):
        await rig.enqueue("oncall", storm_group(number))
        await rig.drain()
    # A new process: fresh memory, the same database.
    rig.dispatcher = rig.new_dispatcher()
    rig.clock.advance(10)
    await rig.dispatcher.restore_budget()
    await rig.enqueue("oncall", storm_group(99))
    await rig.drain()
    assert len(rig.texts_to("zhangsan")) == 30
    assert rig.fake.dropped() == []
    # Sends from before the restart count until a minute after the latest
    # moment WeCom could have counted them: recorded time + wecom.timeout (10 s).
    rig.clock.advance(51)
    await rig.drain()
    assert "storm-0990" not in rig.markers_seen_by("zhangsan")
    rig.clock.advance(10)
    await rig.drain()
    assert "storm-0990" in rig.markers_seen_by("zhangsan")
    assert rig.fake.dropped() == []


async def test_a_failed_digest_part_resends_only_what_was_not_delivered(rig: Rig) -> None:
    for number in range(150):
        await rig.enqueue("oncall", storm_group(number, alerts=3))
    # Part 1 goes out, part 2 meets "system busy".
    rig.fake.add_fault(MESSAGE_SEND, Fault(delay=0.001))
    rig.fake.add_fault(MESSAGE_SEND, Fault(errcode=-1))
    await rig.drain()
    (first,) = rig.texts_to("zhangsan")
    assert "告警汇总" in first
    statuses = await rig.statuses()
    # The groups whose every alert part 1 carried are done; the rest wait for the retry.
    finished = statuses[DeliveryStatus.SENT]
    assert 0 < finished < 150 and statuses[DeliveryStatus.PENDING] == 150 - finished
    rig.clock.advance(10)
    await rig.drain()
    assert await rig.statuses() == {
        DeliveryStatus.PENDING: 0,
        DeliveryStatus.SENT: 150,
        DeliveryStatus.DEAD: 0,
    }
    shown: dict[str, int] = defaultdict(int)
    for text in rig.texts_to("zhangsan"):
        for marker in set(MARKER.findall(text)):
            shown[marker] += 1
    assert set(shown) == {f"storm-{n * 10 + i:04d}" for n in range(150) for i in range(3)}
    # Only a group split across part 1 and part 2 is shown again, in full.
    assert sum(count - 1 for count in shown.values()) <= 3
    assert rig.fake.dropped() == []


async def test_lower_limits_start_digests_sooner(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    async with opened_rig(
        wecom_slot, tmp_path / "b.db", rig_wecom, rig_clock, rate_limit_per_minute=3
    ) as rig:
        for number in range(6):
            await rig.enqueue("oncall", storm_group(number))
            await rig.drain()
    texts = rig.texts_to("zhangsan")
    assert len(texts) == 3  # three single notifications, then everything waits for a slot
    assert rig.deferrals() >= 3


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("app", "rate_limit_per_minute", 31),
        ("app", "rate_limit_per_hour", 1001),
        ("app", "rate_limit_per_minute", 0),
        ("robot", "rate_limit_per_minute", 21),
    ],
)
def test_limits_can_only_be_lowered(section: str, key: str, value: int) -> None:
    app: dict[str, Any] = {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET}
    robot: dict[str, Any] = {"channel": "robot", "robot_key": ROBOT_KEY}
    (app if section == "app" else robot)[key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config({"wecom": {"apps": {"ops": app}}, "receivers": {"room": robot}}, {}, "alertbridge.toml")
    where = "wecom.apps.ops" if section == "app" else "receivers.room"
    assert f"alertbridge.toml: {where}.{key}:" in str(caught.value)


async def test_a_digest_cut_short_by_the_budget_resumes_unchanged_after_a_restart(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    async with opened_rig(
        wecom_slot, tmp_path / "c.db", rig_wecom, rig_clock, rate_limit_per_minute=2
    ) as rig:
        for number in range(100):
            await rig.enqueue("oncall", storm_group(number, alerts=3))
        await rig.drain()
        first_two = rig.texts_to("zhangsan")
        assert len(first_two) == 2
        stored = await rig.outbox.open_digest("oncall", Recipients(to_user=("zhangsan",)))
        assert stored is not None and stored.parts_sent == 2 and len(stored.parts) > 4
        assert [p.content for p in stored.parts[:2]] == first_two
        # Newcomers arrive while the digest waits; then the process restarts.
        for number in range(100, 105):
            await rig.enqueue("oncall", storm_group(number))
        rig.dispatcher = rig.new_dispatcher()
        await rig.dispatcher.restore_budget()
        for _ in range(12):
            rig.clock.advance(61)
            await rig.drain()
    texts = rig.texts_to("zhangsan")
    # The stored parts went out exactly as rendered before the restart, then the newcomers.
    assert texts[: len(stored.parts)] == [p.content for p in stored.parts]
    newcomers = {f"storm-{n * 10:04d}" for n in range(100, 105)}
    assert not newcomers & {m for t in texts[: len(stored.parts)] for m in MARKER.findall(t)}
    shown: dict[str, int] = defaultdict(int)
    for text in texts:
        for marker in set(MARKER.findall(text)):
            shown[marker] += 1
    assert set(shown) == {f"storm-{n * 10 + i:04d}" for n in range(100) for i in range(3)} | newcomers
    assert max(shown.values()) == 1
    assert rig_wecom.dropped() == []


async def test_a_send_that_timed_out_after_wecom_took_it_still_counts_against_the_budget(rig: Rig) -> None:
    """WeCom took the message but its answer came too late: it counts like any
    send, so 30 more notifications never make a 31st message in the minute
    (its resend is hidden by WeCom's duplicate check, but counted too)."""
    rig.fake.add_fault(MESSAGE_SEND, Fault(answer_delay=6))  # beyond the client's 5 s timeout
    await rig.enqueue("oncall", storm_group(0))
    await rig.drain()
    assert len(rig.texts_to("zhangsan")) == 1
    assert await rig.statuses() == {DeliveryStatus.PENDING: 1, DeliveryStatus.SENT: 0, DeliveryStatus.DEAD: 0}
    for number in range(1, 31):  # one by one: each fits what the budget thinks is left
        await rig.enqueue("oncall", storm_group(number))
        await rig.drain()
    for _ in range(20):
        await rig.drain()
        if (await rig.statuses())[DeliveryStatus.PENDING] == 0:
            break
        rig.clock.advance(5)
    over = [m for m in rig.fake.dropped() if m.reason != "duplicate"]
    assert over == [], "a member got more than 30 messages in a minute"
    assert rig.markers_seen_by("zhangsan") == {f"storm-{n * 10:04d}" for n in range(31)}


async def test_a_burst_of_large_groups_that_cannot_all_go_part_by_part_goes_as_one_digest(rig: Rig) -> None:
    """Eleven groups of 40 alerts (several messages each) at once: part by part
    only six would fit the minute and five would wait for the next; as a
    digest every alert is visible now."""
    for number in range(11):
        await rig.enqueue("oncall", storm_group(number * 10, alerts=40))
    await rig.drain()
    assert rig.markers_seen_by("zhangsan") == {
        f"storm-{n * 100 + i:04d}" for n in range(11) for i in range(40)
    }
    assert all("告警汇总" in text for text in rig.texts_to("zhangsan"))
    assert rig.fake.dropped() == []


# -- one-off messages (alertbridge send): sent as stored, within the budget, never in a digest --

ONEOFF = "备份完成 (one-off)"


async def enqueue_oneoff(rig: Rig, message: OneOffMessage) -> int:
    return await rig.outbox.enqueue(
        NewDelivery(
            receiver="oncall",
            channel="app",
            recipients=Recipients(to_user=("zhangsan",)),
            group=storm_group(999, alerts=0),
            request_id="send-1",
            accepted_at=rig.now(),
            oneoff=message,
        )
    )


async def test_a_one_off_waits_for_a_slot_and_never_joins_a_digest(rig: Rig) -> None:
    for number in range(30):  # the member's minute is spent
        await rig.enqueue("oncall", storm_group(number))
        await rig.drain()
        rig.clock.advance(1)
    alerts = [await rig.enqueue("oncall", storm_group(100 + n)) for n in range(3)]
    oneoff = await enqueue_oneoff(rig, OneOffMessage("text", ONEOFF, 2048))
    await rig.drain()
    assert len(rig.texts_to("zhangsan")) == 30  # it waits like the alerts
    assert (await rig.outbox.get(oneoff)).status is DeliveryStatus.PENDING  # type: ignore[union-attr]
    # One slot frees at 12:01, the next a second later: the one-off goes out
    # as itself, the alerts behind it as one digest without it.
    rig.clock.advance(30)
    await rig.drain()
    rig.clock.advance(1)
    await rig.drain()
    texts = rig.texts_to("zhangsan")[30:]
    assert ONEOFF in texts
    digests = [text for text in texts if "告警汇总" in text]
    assert len(digests) == 1 and ONEOFF not in digests[0]
    assert {"storm-1000", "storm-1010", "storm-1020"} <= rig.markers_seen_by("zhangsan")
    for delivery_id in (oneoff, *alerts):
        assert (await rig.outbox.get(delivery_id)).status is DeliveryStatus.SENT  # type: ignore[union-attr]
    assert rig.fake.dropped() == []


async def test_a_one_off_card_is_sent_exactly_as_stored_and_counted(rig: Rig) -> None:
    card = {"title": "日报", "description": "昨日告警 12 条", "url": "https://r.example/", "btntxt": "详情"}
    await enqueue_oneoff(rig, OneOffMessage("textcard", card["description"], 512, card, "textcard"))
    await rig.drain()
    (sent,) = rig.fake.messages(MESSAGE_SEND)
    assert sent.msgtype == "textcard" and sent.body["textcard"] == card
    assert (
        rig.metrics.registry.get_sample_value(
            "alertbridge_messages_sent_total", {"channel": "app", "receiver": "oncall", "outcome": "sent"}
        )
        == 1.0
    )


async def test_a_one_off_refused_for_good_is_dead_lettered_with_the_reason(rig: Rig) -> None:
    rig.fake.add_fault("message/send", Fault(errcode=81013, errmsg="user invalid"))
    oneoff = await enqueue_oneoff(rig, OneOffMessage("text", ONEOFF, 2048))
    await rig.drain()
    dead = await rig.outbox.get(oneoff)
    assert dead is not None and dead.status is DeliveryStatus.DEAD
    assert dead.last_error is not None and "all_recipients_invalid" in dead.last_error
    assert dead.finished_at == datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
