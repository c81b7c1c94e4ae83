"""One-off messages (``alertbridge send``) in the delivery core: sent as
stored, within the shared budget, never merged into a digest — against the
fake WeCom over real HTTP, on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alertbridge.message import Recipients
from alertbridge.stores import DeliveryStatus, NewDelivery, OneOffMessage
from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeWeCom, Fault, ManualClock
from alertbridge.testing.server import SwappableApp
from tests.dispatch_rig import Rig, opened_rig, storm_group

ONEOFF = "备份完成 (one-off)"


@pytest.fixture
async def rig(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> AsyncIterator[Rig]:
    async with opened_rig(wecom_slot, tmp_path / "a.db", rig_wecom, rig_clock) as rig:
        yield rig


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
