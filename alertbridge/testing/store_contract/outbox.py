"""``OutboxContract``: the outbox parts with the one fixture they share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from alertbridge.stores import OutboxStore
from alertbridge.testing.store_contract.helpers import MakeStores, opened
from alertbridge.testing.store_contract.outbox_digests import OutboxDigestContract
from alertbridge.testing.store_contract.outbox_oneoff import OutboxOneOffContract
from alertbridge.testing.store_contract.outbox_queue import OutboxQueueContract


class OutboxContract(OutboxQueueContract, OutboxDigestContract, OutboxOneOffContract):
    """What the webhook handler and the dispatcher rely on from any ``OutboxStore``:
    nothing acknowledged is lost, nothing is claimed twice."""

    @pytest.fixture
    async def store(self, make_stores: MakeStores) -> AsyncIterator[OutboxStore]:
        async with opened(make_stores().outbox) as s:
            yield s
