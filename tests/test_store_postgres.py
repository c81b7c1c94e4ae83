"""What the PostgreSQL store promises beyond the store contract: several replicas
on one database, migrations under an advisory lock, errors without the password.

Every test talks to a real PostgreSQL (alertbridge.testing.postgres_server);
"replicas" are stores with their own pools and replica names on one database.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.metrics import Metrics
from alertbridge.stores import DeliveryStatus, DigestClaim, DigestClaimStatus, DigestPartRecord, NewDelivery
from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.postgres.outbox import PostgresOutboxStore
from alertbridge.stores.postgres.schema import SCHEMA_VERSION
from alertbridge.stores.postgres.state import PostgresStateStore
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.store_contract import T0, make_delivery, make_group, make_ref_group, opened
from tests.harness import AlertbridgeProcess, marked_notification, wait_until

LEASE = timedelta(minutes=1)
OPS = Recipients(to_user=("zhangsan", "lisi"))


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.create_database()


def outbox(url: str, name: str, *, dedup_window: timedelta = timedelta(0)) -> PostgresOutboxStore:
    """Replica ``name``'s outbox, with a pool of its own."""
    return PostgresOutboxStore(PostgresDatabase(url, pool_size=4), replica=name, dedup_window=dedup_window)


def ha_copy(request_id: str, key: str = "notification-1") -> NewDelivery:
    """One Alertmanager HA peer's copy of a notification."""
    return NewDelivery(
        receiver="ops",
        channel="app",
        recipients=OPS,
        group=make_group(),
        request_id=request_id,
        accepted_at=T0,
        dedup_key=key,
    )


async def test_ha_copies_reaching_two_replicas_at_once_are_stored_once(url: str) -> None:
    window = timedelta(minutes=5)
    async with (
        opened(outbox(url, "a", dedup_window=window)) as a,
        opened(outbox(url, "b", dedup_window=window)) as b,
    ):
        duplicates = 0
        for round_ in range(5):
            copies = [ha_copy(f"r{round_}-{i}", key=f"n{round_}") for i in range(6)]
            ids = await asyncio.gather(*((a if i % 2 else b).enqueue(copy) for i, copy in enumerate(copies)))
            assert len(set(ids)) == 1, ids
            assert [i.duplicate for i in ids].count(False) == 1
            duplicates += sum(i.duplicate for i in ids)
        assert await a.count(DeliveryStatus.PENDING) == 5
        assert duplicates == 25


async def test_concurrent_webhooks_share_a_transaction(url: str) -> None:
    metrics = Metrics()
    store = PostgresOutboxStore(
        PostgresDatabase(url, pool_size=4), replica="a", dedup_window=timedelta(minutes=5), metrics=metrics
    )
    async with opened(store):
        copies = [ha_copy(f"r{i}", key=f"n{i % 50}") for i in range(200)]
        ids = await asyncio.gather(*(store.enqueue(copy) for copy in copies))
        commits = metrics.registry.get_sample_value("alertbridge_outbox_group_commits_total") or 0.0
        assert 1 <= commits <= 10, f"{commits} commits for 200 enqueues: no group commit"
        # Copies of one notification in one batch are folded too.
        assert len(set(ids)) == 50 and sum(i.duplicate for i in ids) == 150
        assert await store.count(DeliveryStatus.PENDING) == 50


async def test_a_batch_claims_its_dedup_keys_in_one_statement(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every statement the store's connections run, by asyncpg's own query logger.
    statements: list[str] = []
    create_pool = asyncpg.create_pool

    def logged_pool(*args: Any, **kwargs: Any) -> Any:
        async def init(conn: asyncpg.Connection) -> None:
            conn.add_query_logger(lambda logged: statements.append(logged.query))

        return create_pool(*args, init=init, **kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", logged_pool)
    metrics = Metrics()
    store = PostgresOutboxStore(
        PostgresDatabase(url, pool_size=4), replica="a", dedup_window=timedelta(minutes=5), metrics=metrics
    )
    async with opened(store):
        statements.clear()
        copies = [ha_copy(f"r{i}", key=f"n{i % 10}") for i in range(40)]
        ids = await asyncio.gather(*(store.enqueue(copy) for copy in copies))
        batches = metrics.registry.get_sample_value("alertbridge_outbox_group_commits_total") or 0.0
    assert len(set(ids)) == 10 and sum(i.duplicate for i in ids) == 30
    claims = [s for s in statements if s.startswith("INSERT INTO dedup_keys")]
    assert 1 <= len(claims) == batches < 10, (len(claims), batches)


async def test_a_copy_after_the_window_is_a_new_delivery(url: str) -> None:
    async with opened(outbox(url, "a", dedup_window=timedelta(minutes=5))) as a:
        first = await a.enqueue(ha_copy("r1"))
        within = await a.enqueue(replace(ha_copy("r2"), accepted_at=T0 + timedelta(minutes=5)))
        later = await a.enqueue(replace(ha_copy("r3"), accepted_at=T0 + timedelta(minutes=6)))
        assert within == first and within.duplicate
        assert later != first and not later.duplicate
        # The key now names the later delivery.
        again = await a.enqueue(replace(ha_copy("r4"), accepted_at=T0 + timedelta(minutes=7)))
        assert again == later and again.duplicate


async def test_replicas_claiming_at_once_share_out_the_work(url: str) -> None:
    replicas = [outbox(url, name) for name in "abc"]
    for store in replicas:
        await store.open()
    try:
        ids = await asyncio.gather(*(replicas[i % 3].enqueue(make_delivery()) for i in range(90)))
        batches = await asyncio.gather(
            *(store.claim_due(T0, limit=4, lease=LEASE) for _ in range(10) for store in replicas)
        )
        claimed = [d.id for batch in batches for d in batch]
        assert len(claimed) == len(set(claimed)), "a row was claimed twice"
        assert sorted(claimed) == sorted(ids)
    finally:
        for store in replicas:
            await store.close()


async def test_a_replica_frees_only_its_own_earlier_leases(url: str) -> None:
    async with opened(outbox(url, "a")) as a, opened(outbox(url, "b")) as b:
        mine, theirs = await a.enqueue(make_delivery()), await a.enqueue(make_delivery())
        assert [d.id for d in await a.claim_due(T0, limit=1, lease=LEASE)] == [mine]
        assert [d.id for d in await b.claim_due(T0, limit=1, lease=LEASE)] == [theirs]
        # Replica a restarts under its name: its lease is freed, b's is live.
        async with opened(outbox(url, "a")) as restarted:
            assert await restarted.release_leases() == 1
            assert [d.id for d in await restarted.claim_due(T0, limit=10, lease=LEASE)] == [mine]
        # Replica b was killed: once its lease runs out, replica a takes its work over.
        assert await a.claim_due(T0 + LEASE - timedelta(seconds=1), limit=10, lease=LEASE) == []
        taken = await a.claim_due(T0 + LEASE, limit=10, lease=LEASE)
        assert [d.id for d in taken] == [mine, theirs]


async def test_one_replica_at_a_time_resumes_a_digest(url: str) -> None:
    async with opened(outbox(url, "a")) as a, opened(outbox(url, "b")) as b:
        ids = [await a.enqueue(make_delivery()) for _ in range(2)]
        recipients = make_delivery().recipients
        digest = await a.create_digest(
            "ops", recipients, [DigestPartRecord("text", "one", 2048, ((7, tuple(ids)),))], T0
        )
        assert [d.id for d in (await a.claim_digest(digest.id, T0, LEASE)).members] == ids
        held = await b.claim_digest(digest.id, T0 + timedelta(seconds=1), LEASE)
        assert held == DigestClaim(DigestClaimStatus.HELD_ELSEWHERE)
        assert [d.id for d in (await a.claim_digest(digest.id, T0, LEASE)).members] == ids  # its own lease
        # Replica a died: once its lease ran out, b resumes the digest.
        assert [d.id for d in (await b.claim_digest(digest.id, T0 + LEASE, LEASE)).members] == ids


async def test_two_replicas_claiming_at_once_never_split_an_open_digest(url: str) -> None:
    async with opened(outbox(url, "a")) as a, opened(outbox(url, "b")) as b:
        ids = [await a.enqueue(make_delivery()) for _ in range(40)]
        recipients = make_delivery().recipients
        digest = await a.create_digest(
            "ops", recipients, [DigestPartRecord("text", "one", 2048, ((7, tuple(ids)),))], T0
        )
        batches = await asyncio.gather(*(s.claim_due(T0, limit=3, lease=LEASE) for s in (a, b) * 5))
        holders = [batch for batch in batches if any(d.digest_id == digest.id for d in batch)]
        assert len(holders) == 1 and sorted(d.id for d in holders[0]) == ids


async def test_two_replicas_recording_one_group_at_once_share_its_reference(url: str) -> None:
    databases = [PostgresDatabase(url, pool_size=4) for _ in range(2)]
    states = [PostgresStateStore(db) for db in databases]
    for state in states:
        await state.open()
    try:
        updates = await asyncio.gather(
            *(
                states[i % 2].record_notification(f"r{i % 3}", make_ref_group(f"G{i % 4}"), OPS, T0)
                for i in range(24)
            )
        )
        by_group: dict[tuple[str, str], set[int]] = {}
        for i, update in enumerate(updates):
            by_group.setdefault((f"r{i % 3}", f"G{i % 4}"), set()).add(update.ref.ref)
        assert all(len(refs) == 1 for refs in by_group.values()), by_group
        assert len({ref for refs in by_group.values() for ref in refs}) == 12
    finally:
        for state in states:
            await state.close()


async def test_replicas_starting_together_migrate_once(url: str) -> None:
    databases = [PostgresDatabase(url, pool_size=2) for _ in range(4)]
    await asyncio.gather(*(db.acquire() for db in databases))
    try:
        versions = await databases[0].fetch("check", "SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
    finally:
        for db in databases:
            await db.release()


async def test_a_role_with_data_rights_alone_starts_on_a_migrated_database(
    postgres: PostgresServer, url: str
) -> None:
    """The owner runs `alertbridge migrate`; replicas run as a role that may
    read and write the tables but create nothing (README: the split)."""
    owner = PostgresDatabase(url, pool_size=1)
    await owner.acquire()
    await owner.release()
    database = url.rsplit("/", 1)[1]
    postgres.psql(
        database,
        "CREATE ROLE replica_rw LOGIN PASSWORD 'rw-Passw0rd';"
        f" GRANT CONNECT ON DATABASE {database} TO replica_rw;"
        " REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        " GRANT USAGE ON SCHEMA public TO replica_rw;"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO replica_rw;"
        " GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO replica_rw;",
    )
    limited = postgres.url(database, user="replica_rw", password="rw-Passw0rd")
    async with opened(PostgresOutboxStore(PostgresDatabase(limited, pool_size=2), replica="a")) as store:
        delivery_id = await store.enqueue(ha_copy("rw"))
        assert [d.id for d in await store.list()] == [delivery_id]


async def test_a_database_newer_than_this_release_is_refused(url: str) -> None:
    async with opened(outbox(url, "a")):
        pass
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO schema_version VALUES ($1, now())", SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="newer than this alertbridge"):
        await outbox(url, "a").open()


async def test_errors_never_show_the_password(postgres: PostgresServer, url: str) -> None:
    wrong = url.replace(postgres.password, "not-the-password")
    with pytest.raises(StoreError) as refused:
        await outbox(wrong, "a").open()
    assert "password authentication failed" in str(refused.value)
    unreachable = url.replace(f":{postgres.port}/", ":1/")
    with pytest.raises(StoreError) as down:
        await outbox(unreachable, "a").open()
    for message in (str(refused.value), str(down.value), repr(PostgresDatabase(url))):
        assert postgres.password not in message and "not-the-password" not in message


async def test_a_store_not_open_says_so(url: str) -> None:
    store = outbox(url, "a")
    with pytest.raises(StoreError, match="not open"):
        await store.claim_due(T0, limit=1, lease=LEASE)


async def test_a_database_outage_is_a_store_error_and_the_store_recovers_by_itself(
    postgres: PostgresServer, url: str
) -> None:
    """503s while the database is down; no reopen (no restart of alertbridge) after.

    Stops the module's server and starts it again on the same port and data.
    """
    async with opened(outbox(url, "a")) as store:
        before = await store.enqueue(make_delivery())
        postgres.stop_server()
        try:
            with pytest.raises(StoreError, match=r"^enqueue: "):
                await store.enqueue(make_delivery())
            with pytest.raises(StoreError):
                await store.probe(T0)
        finally:
            postgres.start_server()
        after = await store.enqueue(make_delivery())
        await store.probe(T0)
        assert after > before
        assert {d.id for d in await store.list()} == {before, after}


def test_serve_on_postgresql_with_the_password_from_the_environment(
    postgres: PostgresServer, url: str, tmp_path: Path
) -> None:
    """``[store] url = "postgresql://…${VAR}…"``: alertbridge serves, stores and
    sends through PostgreSQL, and its logs never show the password."""
    templated = url.replace(postgres.password, "${ALERTBRIDGE_DB_PASSWORD}")
    bridge = AlertbridgeProcess(
        tmp_path,
        '[log]\nlevel = "debug"\n[receivers.console]\nchannel = "console"\n',
        env={"ALERTBRIDGE_DB_PASSWORD": postgres.password},
        store_url=templated,
    ).start()
    try:
        answer = httpx.post(
            f"{bridge.base_url}/alertmanager/console",
            content=marked_notification("pg1", "PgServe"),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        bridge.wait_for_stdout("PgServe_pg1")
        wait_until(lambda: bridge.events("message_sent"), 10, "the send")
    finally:
        bridge.stop()
    assert postgres.password not in bridge.stderr() + bridge.stdout()
    assert not bridge.db_path.exists()  # nothing went to SQLite

    async def stored() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT receiver, status FROM deliveries")
        finally:
            await conn.close()
        return [(row[0], row[1]) for row in rows]

    assert asyncio.run(stored()) == [("console", "sent")]


def test_migrate_creates_the_tables_and_says_so(postgres: PostgresServer, url: str, tmp_path: Path) -> None:
    config = tmp_path / "alertbridge.toml"
    config.write_text(
        '[store]\nurl = "' + url.replace(postgres.password, "${DB_PASSWORD}") + '"\n'
        '[receivers.console]\nchannel = "console"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "alertbridge", "migrate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DB_PASSWORD": postgres.password},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout

    async def version() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT MAX(version) FROM schema_version"))
        finally:
            await conn.close()

    assert asyncio.run(version()) == SCHEMA_VERSION
    wrong = subprocess.run(
        [sys.executable, "-m", "alertbridge", "migrate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DB_PASSWORD": "wrong-password"},
        check=False,
    )
    assert wrong.returncode == 1
    assert "password authentication failed" in wrong.stderr and "wrong-password" not in wrong.stderr
