"""Ack-silences of a resolved group are expired by the upkeep task, never on the send path.

An ``ack`` with ``ack_silences`` silences the group "until it resolves". The
expiry is an HTTP call to Alertmanager; when a resolution is recorded the
tracker only wakes its upkeep task, so a slow or hung Alertmanager cannot
hold up the resolved notification.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from alertbridge.config import parse_config
from alertbridge.delivery import GroupTracker
from alertbridge.message import Recipients
from alertbridge.messengers.registry import MessengerDeps, build_messengers
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.sources import alertmanager
from alertbridge.stores import Delivery, DeliveryStatus
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.stores.state import SilenceRecord

DATA = Path(__file__).parent / "data" / "alertmanager"


class HungSilencer:
    """Expiring a silence waits until ``release`` is set, like an Alertmanager that hangs."""

    name = "main"
    kind = "alertmanager"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.expiring: list[str] = []

    async def expire(self, silence_id: str) -> bool:
        self.expiring.append(silence_id)
        await self.release.wait()
        return True


def delivery(name: str, delivery_id: int) -> Delivery:
    now = datetime.now(UTC)
    return Delivery(
        id=delivery_id,
        receiver="r",
        channel="console",
        recipients=Recipients(),
        group=alertmanager.parse((DATA / name).read_bytes()),
        request_id="q",
        accepted_at=now,
        status=DeliveryStatus.PENDING,
        attempts=0,
        parts_sent=0,
        next_attempt_at=now,
        last_error=None,
        finished_at=None,
    )


async def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_resolution_does_not_wait_for_the_silence_expiry(tmp_path: Path) -> None:
    config = parse_config(
        {
            "silencers": {"main": {"kind": "alertmanager", "url": "http://127.0.0.1:9"}},
            "receivers": {"r": {"channel": "console", "msgtype": "markdown", "ack_silences": True}},
        },
        {},
        "t",
    )
    state = SqliteStateStore(tmp_path / "s.db")
    await state.open()
    silencer = HungSilencer()
    async with httpx.AsyncClient() as http:
        tracker = GroupTracker(
            config=config,
            state=state,
            silencers={"main": silencer},  # type: ignore[dict-item]
            messengers=build_messengers(
                MessengerDeps(
                    config=config, client=WeComClient(http, "http://127.0.0.1:9"), out=io.StringIO()
                ),
                state,
            ),
        )
        receiver = config.receivers["r"]
        firing = await tracker.before_send(delivery("firing.json", 1), receiver)
        now = datetime.now(UTC)
        await state.add_silence(
            SilenceRecord(
                silence_id="s-1",
                silencer="main",
                ref=firing.ref,
                created_by="zhangsan",
                ends_at=now + timedelta(hours=1),
                matchers='alertname="HighCPU"',
                created_at=now,
                via_ack=True,
            )
        )
        # The resolved notification is tracked at once, Alertmanager hung or not.
        resolved = await asyncio.wait_for(tracker.before_send(delivery("resolved.json", 2), receiver), 2)
        assert resolved.ref == firing.ref and not resolved.handled_by_cards
        assert silencer.expiring == []

        upkeep = asyncio.create_task(tracker.run_upkeep())
        try:

            async def expiring() -> bool:
                return silencer.expiring == ["s-1"]

            await wait_for(expiring, "the upkeep to expire the ack-silence")
            silencer.release.set()

            async def recorded() -> bool:
                record = await state.get_silence("s-1")
                return record is not None and record.expired_at is not None

            await wait_for(recorded, "the expiry to be recorded")
        finally:
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)
    await state.close()
