"""Retries that make progress, and one bad alert that never costs another:
the dispatcher against the fake WeCom over real HTTP, on a manual clock
(the rig of tests/test_rate_limits.py), so minutes of backoff pass at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alertbridge.config import Config, parse_config
from alertbridge.errors import ConfigError
from alertbridge.model import AlertGroup, Status
from alertbridge.stores import DeliveryStatus
from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, FakeWeCom, Fault, ManualClock
from alertbridge.testing.server import SwappableApp
from tests.dispatch_rig import MARKER, Rig, opened_rig, rig_for, storm_group
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

SEED = 20_261_205


def progress_config(
    base_url: str, db: Path, robot_language: str = "zh", robot_msgtype: str = "text", **delivery: Any
) -> Config:
    """Default backoff (1 s doubling up to 5 min), text messages, one app receiver and a robot."""
    return parse_config(
        {
            "store": {"url": f"sqlite:///{db}"},
            "wecom": {
                "api_base": base_url,
                "apps": {"ops": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET}},
            },
            "delivery": delivery,
            "receivers": {
                "oncall": {"channel": "app", "app": "ops", "to_user": ["zhangsan"], "msgtype": "text"},
                "room": {
                    "channel": "robot",
                    "robot_key": ROBOT_KEY,
                    "msgtype": robot_msgtype,
                    "language": robot_language,
                },
            },
        },
        {},
        "test.toml",
    )


def progress_rig(
    wecom_slot: tuple[SwappableApp, str],
    db: Path,
    rig_wecom: FakeWeCom,
    rig_clock: ManualClock,
    **settings: Any,
) -> contextlib.AbstractAsyncContextManager[Rig]:
    return rig_for(progress_config(wecom_slot[1], db, **settings), rig_wecom, rig_clock)


def wide_group(alerts: int) -> AlertGroup:
    """``storm_group(0, alerts)`` (markers storm-0000 …) with long summaries: many text parts."""
    group = storm_group(0, alerts)
    summary = "磁盘快满了 " + "剩余空间不足，请尽快清理 " * 20
    return group.with_alerts(
        tuple(dataclasses.replace(alert, annotations={"summary": summary}) for alert in group.alerts)
    )


async def run_until_settled(rig: Rig, limit: float) -> float:
    """Drain, then jump the clock to the next due delivery, until nothing is
    pending or ``limit`` seconds of fake time have passed; the fake time taken."""
    started = rig.clock()
    while rig.clock() - started < limit:
        await rig.drain()
        due = await rig.outbox.next_due_at()
        if due is None:
            break
        rig.clock.advance(max(0.0, due.timestamp() - rig.clock()))
    return rig.clock() - started


def flaky(rig_wecom: FakeWeCom, endpoint: str, count: int = 400) -> None:
    """WeCom as item 2 of issue 10 met it: errcode -1 on 30 % of calls, HTTP 502 on 10 %."""
    rng = random.Random(SEED)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.30:
            rig_wecom.add_fault(endpoint, Fault(errcode=-1, errmsg="system busy"))
        elif roll < 0.40:
            rig_wecom.add_fault(endpoint, Fault(status=502))
        else:
            rig_wecom.add_fault(endpoint, Fault(delay=0.0001))


async def test_a_split_group_through_a_flaky_wecom_is_delivered_within_seconds(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    flaky(rig_wecom, MESSAGE_SEND)
    async with progress_rig(wecom_slot, tmp_path / "p.db", rig_wecom, rig_clock) as rig:
        await rig.enqueue("oncall", wide_group(24))
        elapsed = await run_until_settled(rig, limit=600)
        statuses = await rig.statuses()
    texts = rig.texts_to("zhangsan")
    assert len(texts) >= 9  # really split into many parts
    assert rig.markers_seen_by("zhangsan") == {f"storm-{i:04d}" for i in range(24)}
    assert statuses[DeliveryStatus.SENT] == 1
    # Faults hit: more requests than messages.
    assert rig_wecom.request_count(MESSAGE_SEND) >= len(texts) + 5
    # The backoff restarts after every accepted part: seconds, not minutes
    # (doubling across parts took more than two minutes of this fake time).
    assert elapsed < 30, elapsed


async def test_a_genuine_repeat_after_the_duplicate_interval_is_shown(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    """WeCom hides an identical app message only within ``duplicate_check_interval``
    (60 s): a re-send after a crash is hidden, a repeat notification later is not."""
    firing = storm_group(7)
    # Resolved: its text shows no "firing for …" that would differ each time.
    resolved = firing.with_alerts(
        tuple(
            dataclasses.replace(a, status=Status.RESOLVED, ends_at=a.starts_at + timedelta(minutes=5))
            for a in firing.alerts
        )
    )
    resolved = dataclasses.replace(resolved, status=Status.RESOLVED)
    async with progress_rig(wecom_slot, tmp_path / "d.db", rig_wecom, rig_clock) as rig:
        for wait in (0, 30, 31):  # t = 0, 30 s, 61 s
            rig_clock.advance(wait)
            await rig.enqueue("oncall", resolved)
            await rig.drain()
        assert await rig.statuses() == {
            DeliveryStatus.PENDING: 0,
            DeliveryStatus.SENT: 3,
            DeliveryStatus.DEAD: 0,
        }
    first, repeat = rig_wecom.messages(MESSAGE_SEND)
    assert first.body["duplicate_check_interval"] == 60 and first.body["enable_duplicate_check"] == 1
    assert repeat.content == first.content and repeat.timestamp - first.timestamp == 61
    [hidden] = rig_wecom.dropped()
    assert hidden.reason == "duplicate" and hidden.timestamp - first.timestamp == 30


async def test_the_duplicate_interval_is_configurable(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    async with progress_rig(
        wecom_slot, tmp_path / "e.db", rig_wecom, rig_clock, duplicate_check_interval="10s"
    ) as rig:
        await rig.enqueue("oncall", storm_group(7))
        await rig.drain()
    [sent] = rig_wecom.messages(MESSAGE_SEND)
    assert sent.body["duplicate_check_interval"] == 10
    with pytest.raises(ConfigError) as caught:
        progress_config(wecom_slot[1], tmp_path / "f.db", duplicate_check_interval="5h")
    assert "test.toml: delivery.duplicate_check_interval:" in str(caught.value)


def poisoned(group: AlertGroup, *positions: int) -> AlertGroup:
    """``group`` with the alerts at ``positions`` carrying text WeCom refuses (see ``refuse_text``)."""
    return group.with_alerts(
        tuple(
            dataclasses.replace(a, labels={**a.labels, "instance": a.labels["instance"] + "-POISON"})
            if i in positions
            else a
            for i, a in enumerate(group.alerts)
        )
    )


async def test_a_refused_group_in_a_digest_costs_no_other_group(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    rig_wecom.refuse_text("POISON", 40033, "invalid charset")
    async with opened_rig(
        wecom_slot, tmp_path / "g.db", rig_wecom, rig_clock, rate_limit_per_minute=10
    ) as rig:
        ids = [
            await rig.enqueue("oncall", poisoned(storm_group(n), 0) if n == 5 else storm_group(n))
            for n in range(23)
        ]
        await run_until_settled(rig, limit=600)
        statuses = await rig.statuses()
        [dead] = await rig.outbox.list(DeliveryStatus.DEAD)
    assert statuses == {DeliveryStatus.PENDING: 0, DeliveryStatus.SENT: 22, DeliveryStatus.DEAD: 1}
    assert dead.id == ids[5]
    assert dead.last_error is not None
    assert dead.last_error.startswith(
        "invalid_characters: WeCom refused the digest lines of group #6 'Storm0005'"
    )
    assert "errcode 40033" in dead.last_error
    texts = rig.texts_to("zhangsan")
    assert texts and all("告警汇总" in text for text in texts)
    shown = [marker for text in texts for marker in MARKER.findall(text)]
    good = [f"storm-{n * 10:04d}" for n in range(23) if n != 5]
    assert sorted(shown) == good  # each good group exactly once, the refused one never
    assert rig_wecom.dropped() == []


@pytest.mark.parametrize("receiver", ["oncall", "room"])
async def test_a_refused_alert_costs_no_other_alert_of_its_group(
    receiver: str,
    tmp_path: Path,
    rig_wecom: FakeWeCom,
    rig_clock: ManualClock,
    wecom_slot: tuple[SwappableApp, str],
) -> None:
    rig_wecom.refuse_text("POISON", 40033, "invalid charset")
    async with progress_rig(wecom_slot, tmp_path / "h.db", rig_wecom, rig_clock) as rig:
        await rig.enqueue(receiver, poisoned(storm_group(3, alerts=5), 2))
        await run_until_settled(rig, limit=600)
        [dead] = await rig.outbox.list(DeliveryStatus.DEAD)
    texts = [m.content or "" for m in rig_wecom.messages()]
    # The four good alerts, one per message; the refused one nowhere.
    assert sorted(m for t in texts for m in MARKER.findall(t)) == [
        "storm-0030",
        "storm-0031",
        "storm-0033",
        "storm-0034",
    ]
    assert len(texts) == 4 and not any("POISON" in t for t in texts)
    assert dead.last_error == (
        "invalid_characters: WeCom refused alert 'Storm0003 instance=storm-0032-POISON'"
        " (fingerprint 0000000300000002): " + dead.last_error.split("(fingerprint 0000000300000002): ", 1)[1]
    )
    assert "errcode 40033" in dead.last_error
    assert dead.last_error.endswith("; its 4 other alerts were delivered one per message")


class Crash(BaseException):
    """The process dies here: nothing after it runs (not even ``except Exception``)."""


async def crash_after_first_send(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 1 reaches WeCom; the process dies before recording WeCom's answer."""

    async def crash(*args: object, **kwargs: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(rig.outbox, "record_progress", crash)
        patch.setattr(rig.outbox, "mark_sent", crash)
        with pytest.raises(Crash):
            await rig.drain()


async def restart(rig: Rig) -> None:
    """A new process: leases released at start-up, a fresh dispatcher."""
    await rig.outbox.release_leases()
    rig.dispatcher = rig.new_dispatcher()


@pytest.mark.parametrize(("language", "prefix"), [("zh", "（重复）"), ("en", "(repeat) ")])
async def test_a_robot_send_cut_off_by_a_crash_is_repeated_marked_as_a_repeat(
    language: str,
    prefix: str,
    tmp_path: Path,
    rig_wecom: FakeWeCom,
    rig_clock: ManualClock,
    wecom_slot: tuple[SwappableApp, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with progress_rig(
        wecom_slot, tmp_path / "r.db", rig_wecom, rig_clock, robot_language=language
    ) as rig:
        await rig.enqueue("room", wide_group(6))
        await rig.enqueue("oncall", storm_group(9))
        await crash_after_first_send(rig, monkeypatch)
        [first] = rig_wecom.messages()
        [row] = [d for d in await rig.outbox.list() if d.receiver == "room"]
        assert (row.parts_sent, row.sending_part) == (0, 0)
        await restart(rig)
        await run_until_settled(rig, limit=60)
        assert (await rig.statuses())[DeliveryStatus.SENT] == 2
        rows = await rig.outbox.list()
    robot = [m.content or "" for m in rig_wecom.messages(WEBHOOK_SEND)]
    assert robot[0] == first.content and not robot[0].startswith(prefix)
    # The part that may have arrived comes again, marked; the rest as usual.
    assert robot[1].startswith(prefix) and robot[1][len(prefix) :] == first.content
    assert not any(text.startswith(prefix) for text in robot[2:]) and len(robot) > 2
    # The app message, which WeCom's duplicate check covers, is not marked.
    assert not any(m.content.startswith(prefix) for m in rig_wecom.messages(MESSAGE_SEND) if m.content)
    assert all(d.sending_part is None for d in rows)


@pytest.mark.parametrize("msgtype", ["news", "template_card"])
@pytest.mark.parametrize(("language", "prefix"), [("zh", "（重复）"), ("en", "(repeat) ")])
async def test_a_robot_card_or_news_cut_off_by_a_crash_shows_the_repeat_mark(
    msgtype: str,
    language: str,
    prefix: str,
    tmp_path: Path,
    rig_wecom: FakeWeCom,
    rig_clock: ManualClock,
    wecom_slot: tuple[SwappableApp, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A card or a news message shows its section, not the content: the mark
    goes into the card's sub-title or the first article's description."""
    group = wide_group(6)
    linked = group.with_alerts(
        tuple(dataclasses.replace(a, generator_url="https://prom.example/graph") for a in group.alerts)
    )
    settings = {"robot_language": language, "robot_msgtype": msgtype}
    async with progress_rig(wecom_slot, tmp_path / "n.db", rig_wecom, rig_clock, **settings) as rig:
        await rig.enqueue("room", linked)
        await crash_after_first_send(rig, monkeypatch)
        await restart(rig)
        await run_until_settled(rig, limit=60)
        assert (await rig.statuses())[DeliveryStatus.SENT] == 1
    first, again, *_ = rig_wecom.messages(WEBHOOK_SEND)
    assert first.msgtype == again.msgtype == msgtype
    if msgtype == "news":
        shown, shown_again = first.body["news"]["articles"], again.body["news"]["articles"]
        assert not shown[0]["description"].startswith(prefix)
        assert shown_again[0]["description"].startswith(prefix)
        assert shown_again[1:] == shown[1:] and len(shown) > 1
    else:
        card, card_again = first.body["template_card"], again.body["template_card"]
        assert not card["sub_title_text"].startswith(prefix)
        assert card_again["sub_title_text"].startswith(prefix.strip())
        assert {k: v for k, v in card_again.items() if k != "sub_title_text"} == {
            k: v for k, v in card.items() if k != "sub_title_text"
        }


@pytest.mark.parametrize("down_for", [10, 120])
async def test_an_app_send_cut_off_by_a_crash_is_hidden_by_wecom_or_marked(
    down_for: int,
    tmp_path: Path,
    rig_wecom: FakeWeCom,
    rig_clock: ManualClock,
    wecom_slot: tuple[SwappableApp, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within WeCom's duplicate-check interval (60 s) the part that may have
    arrived goes again byte for byte and WeCom hides it; a restart later than
    that would deliver a silent second copy, so the part comes marked instead."""
    async with progress_rig(wecom_slot, tmp_path / "a.db", rig_wecom, rig_clock) as rig:
        await rig.enqueue("oncall", wide_group(6))
        await crash_after_first_send(rig, monkeypatch)
        [first] = rig_wecom.messages(MESSAGE_SEND)
        [row] = await rig.outbox.list()
        assert (row.parts_sent, row.sending_part) == (0, 0)
        assert row.sending_at is not None and row.sending_at.timestamp() == pytest.approx(rig_clock())
        rig_clock.advance(down_for)
        await restart(rig)
        await run_until_settled(rig, limit=120)
        assert (await rig.statuses())[DeliveryStatus.SENT] == 1
    texts = [m.content or "" for m in rig_wecom.messages(MESSAGE_SEND)]
    assert texts[0] == first.content and len(texts) > 2
    if down_for < 60:
        # Sent again identically: WeCom dropped it as a duplicate, the user saw it once.
        [dropped] = rig_wecom.dropped()
        assert (dropped.reason, dropped.content) == ("duplicate", first.content)
        assert texts.count(first.content) == 1
        assert not any(text.startswith("（重复）") for text in texts)
    else:
        assert rig_wecom.dropped() == []
        assert texts[1] == "（重复）" + first.content
        assert not any(text.startswith("（重复）") for text in texts[2:])


async def test_a_send_cut_off_by_a_crash_is_never_merged_into_a_digest(
    tmp_path: Path,
    rig_wecom: FakeWeCom,
    rig_clock: ManualClock,
    wecom_slot: tuple[SwappableApp, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the restart more waits for the member than the budget allows, so
    the backlog goes out as a digest; the message that may have arrived must
    not ride along in it (a second, unmarked copy) but go again as itself."""
    async with progress_rig(wecom_slot, tmp_path / "d.db", rig_wecom, rig_clock) as rig:
        await rig.enqueue("oncall", storm_group(500))
        await crash_after_first_send(rig, monkeypatch)
        [first] = rig_wecom.messages(MESSAGE_SEND)
        assert first.content is not None and "storm-5000" in first.content
        for number in range(40):
            await rig.enqueue("oncall", storm_group(number))
        rig_clock.advance(120)  # past WeCom's duplicate check: the re-send is marked
        await restart(rig)
        await run_until_settled(rig, limit=300)
        assert (await rig.statuses())[DeliveryStatus.SENT] == 41
    texts = [m.content or "" for m in rig_wecom.messages(MESSAGE_SEND)]
    assert any("storm-0390" in text for text in texts), "the backlog went out"
    assert any(text.count("storm-") > 5 for text in texts), "as a digest"
    unmarked = [text for text in texts if "storm-5000" in text and not text.startswith("（重复）")]
    assert unmarked == [first.content]
    assert ["（重复）" + first.content] == [
        t for t in texts if "storm-5000" in t and t.startswith("（重复）")
    ]


async def test_a_send_wecom_answered_is_no_repeat(
    tmp_path: Path, rig_wecom: FakeWeCom, rig_clock: ManualClock, wecom_slot: tuple[SwappableApp, str]
) -> None:
    """An error answer proves the part did not arrive: the retry is not marked."""
    rig_wecom.add_fault(WEBHOOK_SEND, Fault(errcode=-1))
    async with progress_rig(wecom_slot, tmp_path / "s.db", rig_wecom, rig_clock) as rig:
        await rig.enqueue("room", storm_group(4))
        await rig.drain()
        [row] = await rig.outbox.list()
        assert (row.attempts, row.sending_part) == (1, None)
        await run_until_settled(rig, limit=60)
    [message] = rig_wecom.messages(WEBHOOK_SEND)
    assert message.content is not None and "storm-0040" in message.content
    assert not message.content.startswith(("（重复）", "(repeat)"))
