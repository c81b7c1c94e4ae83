"""The store's own series on /metrics, scraped from a real ``alertbridge serve``.

* ``alertbridge_store_pool_connections_in_use`` / ``_idle``: the PostgreSQL
  pool, read at scrape time; absent on SQLite (one connection, no pool).
* ``alertbridge_outbox_lease_takeovers_total``: deliveries claimed whose
  previous lease, held by another replica, had run out. A replica "killed
  mid-work" is played by a store in the test that claims a delivery under
  another replica name with a short lease and is then closed without
  finishing it, as a ``kill -9`` would leave it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from alertbridge.message import Recipients
from alertbridge.stores import NewDelivery
from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.postgres.outbox import PostgresOutboxStore
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.store_contract import make_group, opened
from tests.harness import AlertbridgeProcess

CONSOLE = '[receivers.console]\nchannel = "console"\n'
DEAD_LEASE = timedelta(seconds=2)


def scrape(bridge: AlertbridgeProcess) -> tuple[str, dict[str, float]]:
    """The exposition text, and every unlabelled sample by name."""
    text = httpx.get(f"{bridge.base_url}/metrics", timeout=10).text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }
    return text, samples


async def leave_a_dead_replicas_lease(url: str) -> None:
    """Another replica accepts and claims one delivery, then dies holding its lease."""
    store = PostgresOutboxStore(PostgresDatabase(url, pool_size=1), replica="replica-killed")
    now = datetime.now(UTC)
    async with opened(store):
        await store.enqueue(
            NewDelivery(
                receiver="console",
                channel="console",
                recipients=Recipients(),
                group=make_group("TakenOver"),
                request_id="from-the-dead-replica",
                accepted_at=now,
            )
        )
        assert len(await store.claim_due(now, limit=10, lease=DEAD_LEASE)) == 1


def test_postgres_pool_gauges_and_lease_takeovers(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.create_database()
    asyncio.run(leave_a_dead_replicas_lease(url))
    templated = url.replace(quote(postgres.password, safe=""), "${ALERTBRIDGE_DB_PASSWORD}")
    bridge = AlertbridgeProcess(
        tmp_path, CONSOLE, env={"ALERTBRIDGE_DB_PASSWORD": postgres.password}, store_url=templated
    ).start()
    try:
        # The dead replica's lease still runs: nothing taken over yet.
        text, samples = scrape(bridge)
        assert samples["alertbridge_outbox_lease_takeovers_total"] == 0
        in_use = samples["alertbridge_store_pool_connections_in_use"]
        idle = samples["alertbridge_store_pool_connections_idle"]
        # The pool is open (at least one connection) and never above pool_size (10).
        assert 1 <= in_use + idle <= 10, text
        assert in_use >= 0 and idle >= 0

        bridge.wait_for_stdout("TakenOver", timeout=DEAD_LEASE.total_seconds() + 10)
        text, samples = scrape(bridge)
        assert samples["alertbridge_outbox_lease_takeovers_total"] == 1, text
        assert bridge.events("outbox_lease_takeover"), bridge.stderr()
    finally:
        bridge.stop()
    assert postgres.password not in text + bridge.stderr() + bridge.stdout()


def test_sqlite_exports_no_pool_gauges_and_no_takeovers(tmp_path: Path) -> None:
    bridge = AlertbridgeProcess(tmp_path, CONSOLE).start()
    try:
        text, samples = scrape(bridge)
    finally:
        bridge.stop()
    assert "alertbridge_store_pool_connections" not in text
    assert samples["alertbridge_outbox_lease_takeovers_total"] == 0
