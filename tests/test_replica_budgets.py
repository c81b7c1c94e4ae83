"""Several replicas on one PostgreSQL share WeCom's per-member budgets and a target's digests.

Three "replicas" — each with its own stores and pool on one real PostgreSQL
(alertbridge.testing.postgres_server), its own dispatcher wired as the app
does (tests/delivery_wiring.py) and its own in-memory budget — work one
storm to the fake WeCom over HTTP at once. Each replica's memory sees only
its own sends; the store's reservations must keep the member under WeCom's
30 a minute across all three (the fake drops, answering ok, what exceeds it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alertbridge.config import Config
from alertbridge.delivery import Dispatcher, SendBudget, target_of
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Channel, Receipt
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.stores import DeliveryStatus, NewDelivery, OutboxStore, Stores
from alertbridge.stores.codec import to_us
from alertbridge.stores.postgres import postgres_stores
from alertbridge.stores.postgres.outbox import PostgresOutboxStore
from alertbridge.testing.fake_wecom import FakeWeCom, ManualClock
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.server import SwappableApp
from alertbridge.testing.store_contract import T0, opened
from tests.delivery_wiring import dispatcher as wired_dispatcher
from tests.delivery_wiring import group_tracker, receiver_channels
from tests.dispatch_rig import MARKER, storm_config, storm_group

OPS = Recipients(to_user=("zhangsan",))
# Claimed per round by each replica: small, so the three share out the storm.
CLAIM = 4


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.create_database()


class Replica:
    """One replica: its stores (own pool) and its dispatcher, on the shared clock."""

    def __init__(self, config: Config, stores: Stores, client: WeComClient, clock: ManualClock) -> None:
        self.config = config
        self.client = client
        self.outbox = stores.outbox
        self.state = stores.state
        self._clock = clock
        self.dispatcher: Dispatcher = wired_dispatcher(
            config,
            self.outbox,
            receiver_channels(config, client),
            group_tracker(config, self.state, client),
            clock=self.now,
            budget=SendBudget(),
        )

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def drain(self) -> None:
        """Claim a few due deliveries at a time and deliver them, as the run loop would."""
        while claimed := await self.outbox.claim_due(self.now(), CLAIM, self.config.store.lease_for_claims):
            by_target = defaultdict(list)
            for delivery in claimed:
                by_target[target_of(delivery)].append(delivery)
            await asyncio.gather(*(self.dispatcher.deliver_batch(batch) for batch in by_target.values()))


@contextlib.asynccontextmanager
async def replicas(url: str, config: Config, clock: ManualClock, count: int) -> AsyncIterator[list[Replica]]:
    async with httpx.AsyncClient(timeout=5) as http, contextlib.AsyncExitStack() as stack:
        running = []
        for name in "abcdefgh"[:count]:
            stores = postgres_stores(url, replica=name, dedup_window=timedelta(0), pool_size=4)
            await stack.enter_async_context(opened(stores.outbox))
            await stack.enter_async_context(opened(stores.state))
            client = WeComClient(http, config.wecom.api_base, clock=clock)
            running.append(Replica(config, stores, client, clock))
        yield running


async def enqueue(replica: Replica, config: Config, receiver: str, number: int, *, alerts: int = 1) -> None:
    """Group ``number`` with ``alerts`` alerts; several alerts are marked
    storm-NN00 … (``number * 100 + i``), unique across groups."""
    settings = config.receivers[receiver]
    await replica.outbox.enqueue(
        NewDelivery(
            receiver=receiver,
            channel=settings.channel,
            recipients=Recipients(to_user=tuple(getattr(settings, "to_user", ()))),
            group=storm_group(number) if alerts == 1 else storm_group(number * 10, alerts=alerts),
            request_id=f"storm-{number}",
            accepted_at=replica.now(),
        )
    )


def assert_each_once(fake: FakeWeCom, wanted: set[str]) -> None:
    """Every alert marked in ``wanted`` reached the member, none twice."""
    delivered = [m for msg in fake.messages() for m in MARKER.findall(msg.content or "")]
    assert set(delivered) == wanted
    twice = sorted({m for m in delivered if delivered.count(m) > 1})
    assert twice == [], f"delivered more than once: {len(twice)} alerts, e.g. {twice[:5]}"


async def test_three_replicas_in_a_storm_never_push_a_member_past_thirty_a_minute(
    url: str,
    rig_clock: ManualClock,
    rig_wecom: FakeWeCom,
    wecom_slot: tuple[SwappableApp, str],
    tmp_path: Path,
) -> None:
    config = storm_config(wecom_slot[1], tmp_path / "unused.db")
    async with replicas(url, config, rig_clock, 3) as three:
        number = 0
        # Three minutes of a storm: every 5 s, six notifications for zhangsan
        # (three to each of two receivers that share him) reach the replicas.
        for _ in range(36):
            for receiver in ("oncall", "dba", "oncall", "dba", "oncall", "dba"):
                await enqueue(three[number % 3], config, receiver, number)
                number += 1
            await asyncio.gather(*(replica.drain() for replica in three))
            rig_clock.advance(5)
        # Then the backlog drains as the windows slide.
        for _ in range(60):
            await asyncio.gather(*(replica.drain() for replica in three))
            if await three[0].outbox.count(DeliveryStatus.PENDING) == 0:
                break
            rig_clock.advance(5)
        counts = {status: await three[0].outbox.count(status) for status in DeliveryStatus}
    assert rig_wecom.dropped() == [], "WeCom dropped messages over a member's limit"
    assert counts == {DeliveryStatus.SENT: number, DeliveryStatus.PENDING: 0, DeliveryStatus.DEAD: 0}
    seen = {m for msg in rig_wecom.messages() for m in MARKER.findall(msg.content or "")}
    assert seen == {f"storm-{n * 10:04d}" for n in range(number)}
    # The storm was more than one member's budget: the replicas really competed for it.
    sends = [msg for msg in rig_wecom.messages() if "zhangsan" in msg.to_user]
    assert len(sends) > 30 * 3 // 2


class Stalled:
    """A replica's channel that stalls while ``go`` is clear: the replica is
    mid-digest (its target lease running out) while the test goes on."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self.kind = channel.kind
        self.go = asyncio.Event()
        self.stuck = asyncio.Event()

    @property
    def duplicate_check(self) -> timedelta | None:
        return self._channel.duplicate_check

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        if not self.go.is_set():
            self.stuck.set()
            await self.go.wait()
        return await self._channel.send(message, recipients)


async def test_a_digest_another_replica_is_still_sending_is_never_sent_again(
    url: str,
    rig_clock: ManualClock,
    rig_wecom: FakeWeCom,
    wecom_slot: tuple[SwappableApp, str],
    tmp_path: Path,
) -> None:
    """Replica a stalls mid-digest past its target lease (its deliveries' leases
    still renewed); b takes the target over. b must not send a's digest too:
    every alert reaches the member once."""
    config = storm_config(wecom_slot[1], tmp_path / "unused.db")
    lease = config.store.lease_for_claims
    async with replicas(url, config, rig_clock, 2) as (a, b):
        stalled = {name: Stalled(channel) for name, channel in receiver_channels(config, a.client).items()}
        a.dispatcher = wired_dispatcher(
            config,
            a.outbox,
            stalled,
            group_tracker(config, a.state, a.client),
            clock=a.now,
            budget=SendBudget(),
        )
        for number in range(60):
            await enqueue(a, config, "oncall", number)
        sending = asyncio.create_task(a.drain())
        await asyncio.wait_for(stalled["oncall"].stuck.wait(), 10)
        rig_clock.advance(lease.total_seconds() + 1)
        # a's lease keeper renews its deliveries' leases; its target lease has run out.
        assert isinstance(a.outbox, PostgresOutboxStore)
        await a.outbox.database.execute(
            "renew",
            "UPDATE deliveries SET lease_until = $1 WHERE lease_owner = 'a' AND status = 'pending'",
            to_us(a.now() + lease),
        )
        for number in range(100, 140):
            await enqueue(b, config, "oncall", number)
        await b.drain()
        stalled["oncall"].go.set()
        await sending
        for _ in range(40):
            await asyncio.gather(a.drain(), b.drain())
            if await a.outbox.count(DeliveryStatus.PENDING) == 0:
                break
            rig_clock.advance(5)
        assert await a.outbox.count(DeliveryStatus.PENDING) == 0
    assert_each_once(rig_wecom, {f"storm-{n * 10:04d}" for n in (*range(60), *range(100, 140))})


async def test_a_digest_cut_off_by_the_budget_is_resumed_whole_by_one_replica(
    url: str,
    rig_clock: ManualClock,
    rig_wecom: FakeWeCom,
    wecom_slot: tuple[SwappableApp, str],
    tmp_path: Path,
) -> None:
    """A digest of groups spanning several parts stops when the member's budget
    is spent. When it is due again, two replicas claim at once: one of them
    must resume it, part by part as stored — split between them, neither
    could, and a group half sent before the stop would be sent again whole."""
    config = storm_config(wecom_slot[1], tmp_path / "unused.db")
    async with replicas(url, config, rig_clock, 2) as (a, b):
        for number in range(60):
            await enqueue(a, config, "oncall", number, alerts=40)
        await a.drain()
        assert await a.outbox.count(DeliveryStatus.PENDING) > 0, "the digest outran one minute's budget"
        for _ in range(40):
            rig_clock.advance(61)
            await asyncio.gather(a.drain(), b.drain())
            if await a.outbox.count(DeliveryStatus.PENDING) == 0:
                break
        assert await a.outbox.count(DeliveryStatus.PENDING) == 0
    assert_each_once(rig_wecom, {f"storm-{n * 100 + i:04d}" for n in range(60) for i in range(40)})


async def test_a_replica_holding_a_small_share_of_a_storm_still_digests_it(
    url: str,
    rig_clock: ManualClock,
    rig_wecom: FakeWeCom,
    wecom_slot: tuple[SwappableApp, str],
    tmp_path: Path,
) -> None:
    """Forty multi-part groups wait for one member; replica a has claimed 36 of
    them. Replica b's four fit the budget on their own, but the member's
    backlog does not: b must merge them into a digest, not spend the minute's
    budget on four groups sent part by part."""
    config = storm_config(wecom_slot[1], tmp_path / "unused.db")
    async with replicas(url, config, rig_clock, 2) as (a, b):
        for number in range(40):
            await enqueue(a, config, "oncall", number)
        held = await a.outbox.claim_due(a.now(), 36, config.store.lease_for_claims)
        assert len(held) == 36
        await b.drain()
    texts = [msg.content or "" for msg in rig_wecom.messages()]
    assert texts and all("告警汇总" in text for text in texts), "b sent groups one by one"


async def test_new_deliveries_wait_behind_a_digest_another_replica_is_resuming(
    url: str,
    rig_clock: ManualClock,
    rig_wecom: FakeWeCom,
    wecom_slot: tuple[SwappableApp, str],
    tmp_path: Path,
) -> None:
    """A digest outran one minute's budget; a minute later replica a claims
    its rest. Three new notifications reach replica b: alone they would fit
    the budget, but the minute belongs to the digest — b must not spend it
    on them, one by one."""
    config = storm_config(wecom_slot[1], tmp_path / "unused.db")
    async with replicas(url, config, rig_clock, 2) as (a, b):
        for number in range(200):
            await enqueue(a, config, "oncall", number, alerts=20)
        await a.drain()
        assert await a.outbox.count(DeliveryStatus.PENDING) > 30, "the digest outran one minute's budget"
        rig_clock.advance(61)
        resumed = await a.outbox.claim_due(a.now(), CLAIM, config.store.lease_for_claims)
        assert all(d.digest_id is not None for d in resumed)
        for number in range(900, 903):
            await enqueue(b, config, "oncall", number)
        sent = len(rig_wecom.messages())
        await b.drain()
        assert len(rig_wecom.messages()) == sent, "b sent the new notifications ahead of the digest"


async def test_one_replica_at_a_time_holds_a_target(url: str) -> None:
    lease = timedelta(minutes=1)
    async with replicas_stores(url, "a", "b") as (a, b):
        assert await a.lock_target("ops", OPS, T0, lease)
        assert not await b.lock_target("ops", OPS, T0, lease)
        # Another target is free; the holder renews its own.
        assert await b.lock_target("dba", OPS, T0, lease)
        assert await a.lock_target("ops", OPS, T0 + timedelta(seconds=30), lease)
        assert not await b.lock_target("ops", OPS, T0 + timedelta(seconds=61), lease)
        await b.unlock_target("ops", OPS)  # not b's to give up
        assert not await b.lock_target("ops", OPS, T0, lease)
        await a.unlock_target("ops", OPS)
        assert await b.lock_target("ops", OPS, T0, lease)
        # A holder that vanished (killed) loses the target when its lease runs out.
        assert await a.lock_target("ops", OPS, T0 + timedelta(seconds=60), lease)


@contextlib.asynccontextmanager
async def replicas_stores(url: str, *names: str) -> AsyncIterator[list[OutboxStore]]:
    """Replicas' outboxes, each with its own pool."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                opened(postgres_stores(url, replica=name, dedup_window=timedelta(0), pool_size=2).outbox)
            )
            for name in names
        ]
