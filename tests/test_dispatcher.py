"""The dispatcher against a real SQLite outbox and renderer, with scripted channels."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alertbridge.config import Config, parse_config
from alertbridge.delivery import Dispatcher, GroupTracker
from alertbridge.errors import PermanentDeliveryError, TransientDeliveryError
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Receipt
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.sources import alertmanager
from alertbridge.stores import DeliveryStatus, NewDelivery
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore
from tests.config_builder import build_config
from tests.delivery_wiring import UNREACHABLE_WECOM, group_tracker
from tests.delivery_wiring import dispatcher as wired_dispatcher

DATA = Path(__file__).parent / "data" / "alertmanager"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class ScriptedChannel:
    """Fails the calls whose number is in ``failures`` with the given error."""

    kind = "app"
    duplicate_check = None

    def __init__(self, failures: dict[int, Exception] | None = None) -> None:
        self.failures = failures or {}
        self.calls = 0
        self.sent: list[RenderedMessage] = []

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        self.calls += 1
        if self.calls in self.failures:
            raise self.failures[self.calls]
        self.sent.append(message)
        return Receipt(msgid=str(self.calls))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make_config(tmp_path: Path) -> Config:
    return build_config(
        tmp_path / "alertbridge.db",
        store={"retention": "1d"},
        delivery={"max_age": "1h", "initial_backoff": "10s", "max_backoff": "1m"},
        receivers={"r": {"channel": "console", "msgtype": "markdown"}},
    )


def big_group(alerts: int = 30):  # type: ignore[no-untyped-def]
    data = json.loads((DATA / "firing.json").read_text(encoding="utf-8"))
    template = data["alerts"][0]
    data["alerts"] = [
        {
            **template,
            "labels": {**template["labels"], "instance": f"host-{i:02d}-" + "x" * 60},
            "fingerprint": f"{i:016x}",
        }
        for i in range(alerts)
    ]
    return alertmanager.parse(json.dumps(data).encode())


@pytest.fixture
async def tracker(tmp_path: Path, state: SqliteStateStore):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        yield group_tracker(make_config(tmp_path), state, WeComClient(http, UNREACHABLE_WECOM))


async def enqueue(outbox: SqliteOutboxStore, group) -> int:  # type: ignore[no-untyped-def]
    return await outbox.enqueue(
        NewDelivery(
            receiver="r",
            channel="console",
            recipients=Recipients(),
            group=group,
            request_id="q",
            accepted_at=T0,
        )
    )


def make_dispatcher(
    tmp_path: Path, outbox: SqliteOutboxStore, channel: ScriptedChannel, clock: Clock, tracker: GroupTracker
) -> Dispatcher:
    return wired_dispatcher(make_config(tmp_path), outbox, {"r": channel}, tracker, clock=clock)


async def claim_and_deliver(dispatcher: Dispatcher, outbox: SqliteOutboxStore, clock: Clock) -> None:
    for delivery in await outbox.claim_due(clock(), 10, timedelta(minutes=10)):
        await dispatcher.deliver(delivery)


async def test_a_split_group_resumes_at_the_part_that_failed(tmp_path: Path, outbox, tracker) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    channel = ScriptedChannel({2: TransientDeliveryError("busy", reason="system_busy")})
    dispatcher = make_dispatcher(tmp_path, outbox, channel, clock, tracker)
    delivery_id = await enqueue(outbox, big_group())

    await claim_and_deliver(dispatcher, outbox, clock)
    [row] = await outbox.list()
    assert row.status is DeliveryStatus.PENDING and row.parts_sent == 1 and row.attempts == 1
    assert row.next_attempt_at == T0 + timedelta(seconds=10)
    parts = channel.sent[0].parts
    assert parts > 2

    clock.now += timedelta(seconds=10)
    await claim_and_deliver(dispatcher, outbox, clock)
    [row] = await outbox.list()
    assert row.id == delivery_id and row.status is DeliveryStatus.SENT
    # Every part exactly once, in order, despite the retry.
    assert [m.part for m in channel.sent] == list(range(1, parts + 1))


async def test_permanent_failure_dead_letters_at_once(tmp_path: Path, outbox, tracker) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    channel = ScriptedChannel(
        {1: PermanentDeliveryError("81013 all recipients invalid", reason="bad_recipients")}
    )
    await enqueue(outbox, big_group(1))
    await claim_and_deliver(make_dispatcher(tmp_path, outbox, channel, clock, tracker), outbox, clock)
    [row] = await outbox.list()
    assert row.status is DeliveryStatus.DEAD
    assert row.last_error is not None and "bad_recipients" in row.last_error


async def test_rate_limit_delay_is_honoured(tmp_path: Path, outbox, tracker) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    channel = ScriptedChannel({1: TransientDeliveryError("45009", reason="rate_limited", min_delay=60)})
    await enqueue(outbox, big_group(1))
    await claim_and_deliver(make_dispatcher(tmp_path, outbox, channel, clock, tracker), outbox, clock)
    [row] = await outbox.list()
    assert row.next_attempt_at == T0 + timedelta(seconds=60)


async def test_transient_failures_past_max_age_become_dead(tmp_path: Path, outbox, tracker) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    failures: dict[int, Exception] = {
        n: TransientDeliveryError("busy", reason="system_busy") for n in range(1, 100)
    }
    dispatcher = make_dispatcher(tmp_path, outbox, ScriptedChannel(failures), clock, tracker)
    await enqueue(outbox, big_group(1))
    for _ in range(200):
        [row] = await outbox.list()
        if row.status is DeliveryStatus.DEAD:
            break
        clock.now = max(clock.now, row.next_attempt_at)
        await claim_and_deliver(dispatcher, outbox, clock)
    assert row.status is DeliveryStatus.DEAD
    assert row.last_error is not None and row.last_error.startswith("gave up after")
    assert clock.now - T0 >= timedelta(hours=1)


async def test_receiver_removed_from_config_is_dead_lettered_not_dropped(
    tmp_path: Path, outbox, tracker
) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    await outbox.enqueue(
        NewDelivery(
            receiver="gone",
            channel="app",
            recipients=Recipients(),
            group=big_group(1),
            request_id="q",
            accepted_at=T0,
        )
    )
    await claim_and_deliver(
        make_dispatcher(tmp_path, outbox, ScriptedChannel(), clock, tracker), outbox, clock
    )
    [row] = await outbox.list()
    assert row.status is DeliveryStatus.DEAD and "no longer configured" in (row.last_error or "")


async def test_sent_rows_are_pruned_after_retention_dead_ones_kept(tmp_path: Path, outbox, tracker) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    channel = ScriptedChannel({2: PermanentDeliveryError("bad", reason="invalid_parameter")})
    dispatcher = make_dispatcher(tmp_path, outbox, channel, clock, tracker)
    await enqueue(outbox, big_group(1))
    await enqueue(outbox, big_group(1))
    await claim_and_deliver(dispatcher, outbox, clock)
    assert {r.status for r in await outbox.list()} == {DeliveryStatus.SENT, DeliveryStatus.DEAD}

    clock.now += timedelta(days=1, seconds=1)
    await dispatcher._prune_if_due()
    assert [r.status for r in await outbox.list()] == [DeliveryStatus.DEAD]


async def test_messages_offer_replies_only_where_someone_can_send_them(
    tmp_path: Path, outbox, tracker
) -> None:  # type: ignore[no-untyped-def]
    """The dispatcher tells the templates who can reply: an app receiver whose
    callback hears its named users gets no Alertmanager silence link (they reply
    ``silence N``); a party audience nobody may act for keeps the link."""
    config = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'alertbridge.db'}"},
            "wecom": {
                "apps": {
                    "ops": {
                        "corp_id": "ww1",
                        "agent_id": 1,
                        "secret": "s",
                        "token": "t",
                        "encoding_aes_key": "a" * 43,
                    }
                }
            },
            "silencers": {"am": {"kind": "alertmanager", "url": ["http://am:9093"]}},
            "receivers": {
                "named": {"channel": "app", "app": "ops", "to_user": ["zhangsan"]},
                "party": {"channel": "app", "app": "ops", "to_party": ["2"]},
            },
        },
        {},
        "t",
    )
    # The tracker (and its messengers' rate limits) of this config.
    state = SqliteStateStore(tmp_path / "s.db")
    await state.open()
    async with httpx.AsyncClient() as http:
        tracker = group_tracker(config, state, WeComClient(http, UNREACHABLE_WECOM))
    channels = {"named": ScriptedChannel(), "party": ScriptedChannel()}
    clock = Clock()
    dispatcher = wired_dispatcher(config, outbox, channels, tracker, clock=clock)
    for name, recipients in (
        ("named", Recipients(to_user=("zhangsan",))),
        ("party", Recipients(to_party=("2",))),
    ):
        await outbox.enqueue(
            NewDelivery(
                receiver=name,
                channel="app",
                recipients=recipients,
                group=big_group(1),
                request_id=name,
                accepted_at=T0,
            )
        )
    await claim_and_deliver(dispatcher, outbox, clock)
    [named] = channels["named"].sent
    [party] = channels["party"].sent
    assert "silences/new" not in named.content
    assert "silences/new" in party.content
    await state.close()
