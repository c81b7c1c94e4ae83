"""An in-process dispatcher rig: a dispatcher, its SQLite stores and the fake
WeCom over real HTTP, all on one manual clock, so minutes of rate limits and
backoff pass when a test says so.

The rate-limit and delivery-progress tests drive it; its fixtures
(``rig_clock``, ``rig_wecom``) live in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from alertbridge.config import Config, parse_config
from alertbridge.delivery import Dispatcher, SendBudget, target_of
from alertbridge.message import Recipients
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.metrics import Metrics
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.stores import DeliveryStatus, NewDelivery
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeWeCom, ManualClock
from alertbridge.testing.server import SwappableApp
from tests.delivery_wiring import dispatcher as wired_dispatcher
from tests.delivery_wiring import group_tracker, receiver_channels
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

# When the rig's clock starts: the day the storms in these tests happen.
RIG_START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()
MARKER = re.compile(r"storm-\d{4}")


def storm_config(base_url: str, db: Path, **app_overrides: Any) -> Config:
    return parse_config(
        {
            "store": {"url": f"sqlite:///{db}"},
            "wecom": {
                "api_base": base_url,
                "apps": {
                    "ops": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET, **app_overrides}
                },
            },
            "delivery": {"initial_backoff": "1s", "max_backoff": "5s"},
            "receivers": {
                "oncall": {"channel": "app", "app": "ops", "to_user": ["zhangsan"]},
                "dba": {"channel": "app", "app": "ops", "to_user": ["zhangsan", "lisi"]},
                "room": {"channel": "robot", "robot_key": ROBOT_KEY},
            },
        },
        {},
        "test.toml",
    )


def storm_group(number: int, alerts: int = 1) -> AlertGroup:
    """One group whose every alert carries a unique marker (``storm-0042``) in its text."""
    name = f"Storm{number:04d}"
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key=f'{{}}:{{alertname="{name}"}}',
        alerts=tuple(
            Alert(
                status=Status.FIRING,
                labels={"alertname": name, "instance": f"storm-{number * 10 + i:04d}"},
                annotations={"summary": "磁盘快满了"},
                starts_at=datetime(2026, 11, 29, 11, 0, tzinfo=UTC),
                ends_at=None,
                fingerprint=f"{number:08x}{i:08x}",
            )
            for i in range(alerts)
        ),
        group_labels={"alertname": name},
        common_labels={"alertname": name},
    )


class Rig:
    """A dispatcher, its stores and the fake WeCom, all on one manual clock."""

    def __init__(self, config: Config, fake: FakeWeCom, clock: ManualClock, http: httpx.AsyncClient) -> None:
        self.config = config
        self.fake = fake
        self.clock = clock
        self.outbox = SqliteOutboxStore(config.store.sqlite_path)
        self.state = SqliteStateStore(config.store.sqlite_path)
        self.client = WeComClient(http, config.wecom.api_base, clock=clock)
        self.metrics = Metrics()
        self.dispatcher = self.new_dispatcher()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def new_dispatcher(self) -> Dispatcher:
        return wired_dispatcher(
            self.config,
            self.outbox,
            receiver_channels(self.config, self.client),
            group_tracker(self.config, self.state, self.client),
            clock=self.now,
            budget=SendBudget(),
            metrics=self.metrics,
        )

    async def enqueue(self, receiver: str, group: AlertGroup) -> int:
        settings = self.config.receivers[receiver]
        recipients = Recipients(to_user=tuple(getattr(settings, "to_user", ())))
        return await self.outbox.enqueue(
            NewDelivery(
                receiver=receiver,
                channel=settings.channel,
                recipients=recipients,
                group=group,
                request_id="t",
                accepted_at=self.now(),
            )
        )

    async def drain(self) -> None:
        """Deliver everything due now, target by target, as the run loop would."""
        while claimed := await self.outbox.claim_due(self.now(), 1000, self.config.store.lease_for_claims):
            by_target = defaultdict(list)
            for delivery in claimed:
                by_target[target_of(delivery)].append(delivery)
            for batch in by_target.values():
                await self.dispatcher.deliver_batch(batch)

    def texts_to(self, user: str) -> list[str]:
        return [m.content or "" for m in self.fake.messages(MESSAGE_SEND) if user in m.to_user]

    def markers_seen_by(self, user: str) -> set[str]:
        return {marker for text in self.texts_to(user) for marker in MARKER.findall(text)}

    def count(self, metric: str, receiver: str = "oncall") -> float:
        return self.metrics.registry.get_sample_value(metric, {"receiver": receiver}) or 0.0

    def deferrals(self) -> float:
        return self.count("alertbridge_rate_limit_deferrals_total")

    async def statuses(self) -> dict[DeliveryStatus, int]:
        return {status: await self.outbox.count(status) for status in DeliveryStatus}


@contextlib.asynccontextmanager
async def opened_rig(
    server: tuple[SwappableApp, str], db: Path, fake: FakeWeCom, clock: ManualClock, **app_overrides: Any
) -> AsyncIterator[Rig]:
    """A Rig with its stores open, for a config with ``app_overrides`` on the app."""
    async with rig_for(storm_config(server[1], db, **app_overrides), fake, clock) as rig:
        yield rig


@contextlib.asynccontextmanager
async def rig_for(config: Config, fake: FakeWeCom, clock: ManualClock) -> AsyncIterator[Rig]:
    """A Rig of ``config`` with its stores open."""
    async with httpx.AsyncClient(timeout=5) as http:
        rig = Rig(config, fake, clock, http)
        await rig.outbox.open()
        await rig.state.open()
        try:
            yield rig
        finally:
            await rig.state.close()
            await rig.outbox.close()
