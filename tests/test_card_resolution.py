"""Cards of a resolved group turn "已恢复 / Resolved" from the upkeep task, never on the send path.

Updating a card is one WeCom call per card, and its outcome decides whether
a resolved message is sent at all. The send path only records the work; the
upkeep does it and records the outcome; the resolved delivery waits for that
outcome (deferred, not failed), so a slow WeCom holds up no other delivery,
and a crash in between still ends in exactly one visible resolution.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from alertbridge.config import Config, parse_config
from alertbridge.delivery import GroupTracker, SendBudget
from alertbridge.model import AlertGroup, Status
from alertbridge.stores import DeliveryStatus
from alertbridge.stores.state import ResolutionState
from alertbridge.testing.fake_wecom import (
    MESSAGE_SEND,
    UPDATE_TEMPLATE_CARD,
    FakeApp,
    FakeWeCom,
    Fault,
    ManualClock,
)
from alertbridge.testing.server import SwappableApp
from tests.callback_bridge import FIRING, Bridge, callback_app
from tests.delivery_wiring import dispatcher as wired_dispatcher
from tests.delivery_wiring import group_tracker, receiver_channels
from tests.dispatch_rig import Rig, rig_for, storm_group
from tests.harness import wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

DATA = Path(__file__).parent / "data"
# How long the fake WeCom holds each card update in the slow-WeCom test.
HELD_SECONDS = 3.0


def card_config(base_url: str, db: Path, **app_overrides: object) -> Config:
    return parse_config(
        {
            "server": {"language": "zh"},
            "store": {"url": f"sqlite:///{db}"},
            "wecom": {
                "api_base": base_url,
                "apps": {"ops": callback_app(**app_overrides)},
            },
            "receivers": {
                "cards": {"channel": "app", "app": "ops", "to_user": ["zhaoliu"], "msgtype": "template_card"}
            },
        },
        {},
        "test.toml",
    )


def resolved(group: AlertGroup) -> AlertGroup:
    ended = group.with_alerts(
        tuple(
            dataclasses.replace(a, status=Status.RESOLVED, ends_at=a.starts_at + timedelta(minutes=5))
            for a in group.alerts
        )
    )
    return dataclasses.replace(ended, status=Status.RESOLVED)


def on_tracker_clock(rig: Rig) -> GroupTracker:
    """Give ``rig`` a tracker on its manual clock (patience is counted on it); return the tracker."""
    tracker = group_tracker(rig.config, rig.state, rig.client, clock=rig.now)
    rig.dispatcher = wired_dispatcher(
        rig.config,
        rig.outbox,
        receiver_channels(rig.config, rig.client),
        tracker,
        clock=rig.now,
        budget=SendBudget(),
        metrics=rig.metrics,
    )
    return tracker


async def upkeep_decides(tracker: GroupTracker, rig: Rig, delivery_id: int) -> ResolutionState:
    """Run the tracker's upkeep until it decides ``delivery_id``'s resolution; the outcome."""
    upkeep = asyncio.create_task(tracker.run_upkeep())
    try:
        for _ in range(250):
            decided = await rig.state.get_resolution(delivery_id)
            if decided is not None and decided.state is not ResolutionState.PENDING:
                return decided.state
            await asyncio.sleep(0.02)
    finally:
        upkeep.cancel()
        await asyncio.gather(upkeep, return_exceptions=True)
    raise AssertionError(f"the upkeep did not decide the resolution of delivery {delivery_id}")


def msgtypes_to(fake: FakeWeCom, user: str) -> list[str]:
    return [m.msgtype for m in fake.messages(MESSAGE_SEND) if user in m.to_user]


def test_a_slow_card_update_holds_up_no_other_delivery(
    tmp_path: Path, serve_wecom: Callable[[FakeWeCom], str], serve_app: Callable[..., str]
) -> None:
    """WeCom holds the card update for seconds: the group resolved before
    another fired, to the same member, and the other's card still goes out at
    once. The update then lands and no resolved message is sent."""
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    config = card_config(serve_wecom(wecom), tmp_path / "ab.db")
    bridge = Bridge(serve_app(config), wecom, tmp_path / "ab.db")
    bridge.post_alert("cards")
    wait_until(lambda: msgtypes_to(wecom, "zhaoliu") == ["template_card"], what="the first card")

    wecom.add_fault(UPDATE_TEMPLATE_CARD, Fault(delay=HELD_SECONDS))
    bridge.post_alert("cards", json.loads((DATA / "alertmanager" / "resolved.json").read_text("utf-8")))
    other = {
        **FIRING,
        "groupKey": '{}:{alertname="DiskFull"}',
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {**FIRING["commonLabels"], "alertname": "DiskFull"},
        "alerts": [{**a, "labels": {**a["labels"], "alertname": "DiskFull"}} for a in FIRING["alerts"]],
    }
    posted = time.monotonic()
    bridge.post_alert("cards", other)
    wait_until(
        lambda: msgtypes_to(wecom, "zhaoliu") == ["template_card", "template_card"], what="the other card"
    )
    # Sent while WeCom still held the update: nothing waited for it.
    assert time.monotonic() - posted < HELD_SECONDS - 1
    assert wecom.card_updates() == []

    wait_until(lambda: len(wecom.card_updates()) == 1, what="the card update")
    assert wecom.card_updates()[0].replace_name == "已恢复"
    wait_until(lambda: bridge.pending_deliveries() == 0, what="the resolved delivery to finish")
    assert msgtypes_to(wecom, "zhaoliu") == ["template_card", "template_card"]  # no resolved message


async def test_a_crash_before_the_outcome_still_updates_the_card_once(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    """The resolution is recorded and the process dies before any upkeep ran:
    after the restart the upkeep updates the card and the delivery finishes
    without a message — one visible resolution."""
    config = card_config(wecom_slot[1], tmp_path / "d.db")
    group = storm_group(1)
    async with rig_for(config, rig_wecom, rig_clock) as rig:
        on_tracker_clock(rig)
        await rig.enqueue("cards", group)
        await rig.drain()
        delivery_id = await rig.enqueue("cards", resolved(group))
        await rig.drain()
        pending = await rig.state.get_resolution(delivery_id)
        assert pending is not None and pending.state is ResolutionState.PENDING
        assert await rig.statuses() == {
            DeliveryStatus.PENDING: 1,
            DeliveryStatus.SENT: 1,
            DeliveryStatus.DEAD: 0,
        }
        assert rig_wecom.card_updates() == []
    # The crash: nothing of that process survives but the database.

    async with rig_for(config, rig_wecom, rig_clock) as rig:
        assert await upkeep_decides(on_tracker_clock(rig), rig, delivery_id) is ResolutionState.DONE
        rig_clock.advance(2)
        await rig.drain()
        assert await rig.statuses() == {
            DeliveryStatus.PENDING: 0,
            DeliveryStatus.SENT: 2,
            DeliveryStatus.DEAD: 0,
        }
    assert [u.replace_name for u in rig_wecom.card_updates()] == ["已恢复"]
    assert msgtypes_to(rig_wecom, "zhaoliu") == ["template_card"]


async def test_without_an_outcome_in_time_a_resolved_message_is_sent_once(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    """No upkeep decides (it keeps failing): after two minutes the delivery
    sends a normal resolved message, and a late upkeep leaves the card alone."""
    config = card_config(wecom_slot[1], tmp_path / "d.db")
    group = storm_group(2)
    async with rig_for(config, rig_wecom, rig_clock) as rig:
        tracker = on_tracker_clock(rig)
        await rig.enqueue("cards", group)
        await rig.drain()
        delivery_id = await rig.enqueue("cards", resolved(group))
        for _ in range(3):  # claimed again each second, still waiting
            await rig.drain()
            rig_clock.advance(1)
        assert msgtypes_to(rig_wecom, "zhaoliu") == ["template_card"]

        rig_clock.advance(120)
        await rig.drain()
        assert msgtypes_to(rig_wecom, "zhaoliu") == ["template_card", "markdown"]
        failed = await rig.state.get_resolution(delivery_id)
        assert failed is not None and failed.state is ResolutionState.FAILED

        upkeep = asyncio.create_task(tracker.run_upkeep())
        await asyncio.sleep(0.3)
        upkeep.cancel()
        await asyncio.gather(upkeep, return_exceptions=True)
        assert await rig.statuses() == {
            DeliveryStatus.PENDING: 0,
            DeliveryStatus.SENT: 2,
            DeliveryStatus.DEAD: 0,
        }
    assert rig_wecom.card_updates() == []


async def test_a_digest_does_not_wait_for_a_card_update(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    """A backlog merged into a digest holds a resolved card group: the digest
    goes out without it and without any call to update a card; the card is
    updated by the upkeep afterwards and the group gets no line of its own."""
    config = card_config(wecom_slot[1], tmp_path / "d.db", rate_limit_per_minute=2)
    first = storm_group(1)
    async with rig_for(config, rig_wecom, rig_clock) as rig:
        tracker = on_tracker_clock(rig)
        await rig.enqueue("cards", first)
        await rig.drain()
        resolution = await rig.enqueue("cards", resolved(first))
        for number in (2, 3, 4):
            await rig.enqueue("cards", storm_group(number))
        await rig.drain()  # one slot left for four: a digest
        assert rig.count("alertbridge_digests_sent_total", "cards") == 1
        assert rig_wecom.card_updates() == []
        digest = [m.content or "" for m in rig_wecom.messages(MESSAGE_SEND)][-1]
        assert all(f"Storm{n:04d}" in digest for n in (2, 3, 4)) and "Storm0001" not in digest

        assert await upkeep_decides(tracker, rig, resolution) is ResolutionState.DONE
        rig_clock.advance(61)
        await rig.drain()
        assert await rig.statuses() == {
            DeliveryStatus.PENDING: 0,
            DeliveryStatus.SENT: 5,
            DeliveryStatus.DEAD: 0,
        }
    assert [u.replace_name for u in rig_wecom.card_updates()] == ["已恢复"]
    assert len(rig_wecom.messages(MESSAGE_SEND)) == 2
