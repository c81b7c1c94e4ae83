"""The store contract (alertbridge.testing.store_contract) run against a real PostgreSQL.

One throwaway server (alertbridge.testing.postgres_server) for the module, a
fresh database for every test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from alertbridge.stores import Stores
from alertbridge.stores.postgres import postgres_stores
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.store_contract import MakeStores, OutboxContract, StateContract


@pytest.fixture
def make_stores(postgres: PostgresServer) -> MakeStores:
    """Stores on one fresh database per test, as one replica builds them."""
    url = postgres.create_database()

    def make() -> Stores:
        # One replica name: a second store in a test is this replica restarted
        # (or a CLI beside it), as the contract's SQLite store is.
        return postgres_stores(url, replica="replica-a", dedup_window=timedelta(0), pool_size=4)

    return make


class TestPostgresOutbox(OutboxContract):
    pass


class TestPostgresState(StateContract):
    pass
