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
from alertbridge.message import Recipients
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.stores import DeliveryStatus, NewDelivery, OutboxStore, Stores
from alertbridge.stores.postgres import postgres_stores
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


async def enqueue(replica: Replica, config: Config, receiver: str, number: int) -> None:
    settings = config.receivers[receiver]
    await replica.outbox.enqueue(
        NewDelivery(
            receiver=receiver,
            channel=settings.channel,
            recipients=Recipients(to_user=tuple(getattr(settings, "to_user", ()))),
            group=storm_group(number),
            request_id=f"storm-{number}",
            accepted_at=replica.now(),
        )
    )


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
