"""The outbox contract, part three: one-off messages (``alertbridge send``),
stored beside alert groups and never taken into a digest."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from alertbridge.stores import OneOffMessage, OutboxStore
from alertbridge.testing.store_contract.helpers import T0, make_delivery

CARD = OneOffMessage(
    "textcard",
    "昨日告警 12 条",
    512,
    {"title": "日报", "description": "昨日告警 12 条", "url": "https://r.example/", "btntxt": "详情"},
    "textcard",
)
FILE = OneOffMessage("file", "report.pdf", 1700, {"media_id": "3a8asd892asd8asd"}, "file 'report.pdf'")


class OutboxOneOffContract:
    """One-off deliveries (collected through ``OutboxContract``)."""

    async def test_a_one_off_message_round_trips_and_an_alert_delivery_has_none(
        self, store: OutboxStore
    ) -> None:
        card = await store.enqueue(dataclasses.replace(make_delivery(), oneoff=CARD))
        text = OneOffMessage("text", "备份完成", 2048)
        plain = await store.enqueue(dataclasses.replace(make_delivery(), oneoff=text))
        alert = await store.enqueue(make_delivery())
        claimed = {d.id: d for d in await store.claim_due(T0, limit=10, lease=timedelta(minutes=1))}
        assert claimed[card].oneoff == CARD and claimed[plain].oneoff == text
        assert claimed[alert].oneoff is None
        got = await store.get(card)
        assert got is not None and got.oneoff == CARD and got.oneoff.message().card == CARD.card

    async def test_a_digest_never_takes_a_one_off(self, store: OutboxStore) -> None:
        """It goes out as itself; it still competes for the target's budget."""
        oneoff = await store.enqueue(dataclasses.replace(make_delivery(T0), oneoff=FILE))
        alert = await store.enqueue(make_delivery(T0 + timedelta(seconds=1)))
        recipients = make_delivery().recipients
        claimed = await store.claim_backlog("ops", recipients, T0, limit=10, lease=timedelta(minutes=1))
        assert [d.id for d in claimed] == [alert]
        assert await store.count_backlog("ops", recipients) == 2
        [pending] = [d for d in await store.list() if d.id == oneoff]
        assert pending.oneoff == FILE
