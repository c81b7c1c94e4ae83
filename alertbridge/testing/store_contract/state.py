"""``StateContract``: the two state parts with the fixtures they share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from alertbridge.stores import OutboxStore
from alertbridge.stores.state import StateStore
from alertbridge.testing.store_contract.helpers import MakeStores, opened
from alertbridge.testing.store_contract.state_records import StateRecordsContract
from alertbridge.testing.store_contract.state_refs import StateRefsContract


class StateContract(StateRefsContract, StateRecordsContract):
    """What users see of any ``StateStore``: ``#27`` keeps naming the same alert
    group, an ack silences exactly the unchanged repeats of what was
    acknowledged, a WeCom callback acts once, a card's response_code is spent once."""

    @pytest.fixture
    async def outbox(self, make_stores: MakeStores) -> AsyncIterator[OutboxStore]:
        """The outbox of the same backing store, open while the state store is."""
        async with opened(make_stores().outbox) as s:
            yield s

    @pytest.fixture
    async def store(self, make_stores: MakeStores, outbox: OutboxStore) -> AsyncIterator[StateStore]:
        """The state store, opened while the outbox has the same backing store open."""
        async with opened(make_stores().state) as s:
            yield s
