"""The store contract (alertbridge.testing.store_contract) run against SQLite."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from alertbridge.stores import Stores
from alertbridge.stores.sqlite import sqlite_stores
from alertbridge.testing.store_contract import MakeStores, OutboxContract, StateContract


@pytest.fixture
def make_stores(tmp_path: Path) -> MakeStores:
    """Stores on one database file per test, as ``serve`` builds them."""
    path = tmp_path / "alertbridge.db"

    def make() -> Stores:
        return sqlite_stores(path, dedup_window=timedelta(0))

    return make


class TestSqliteOutbox(OutboxContract):
    pass


class TestSqliteState(StateContract):
    pass
