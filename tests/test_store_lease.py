"""``[store] lease``: how long a replica owns claimed work before another may take it.

* the setting is validated (a config error naming the file and the key) and
  defaults by backend: 30 s on PostgreSQL, 10 min on SQLite (as before);
* the dispatcher claims with it (seen in the outbox of a real ``serve``
  while a send is held up);
* on PostgreSQL a live replica renews the leases of what it holds, so a
  lease shorter than a send never hands live work to another replica, while a
  replica that stops (killed, closed) lets its work go within the lease.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alertbridge.config import load_config
from alertbridge.errors import ConfigError
from alertbridge.metrics import Metrics
from alertbridge.stores.codec import from_us
from alertbridge.stores.postgres.db import PostgresDatabase
from alertbridge.stores.postgres.outbox import PostgresOutboxStore
from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom, Fault
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.store_contract import make_delivery, opened
from tests.harness import AlertbridgeProcess, marked_notification, wait_until

CORP_ID = "ww0a1b2c3d4e5f6a7b"
SECRET = "lease-corp-secret-9e8d7c6b"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alertbridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ('url = "sqlite:///./data/a.db"', timedelta(minutes=10)),
        ('url = "postgresql://u:pw@db/ab"', timedelta(seconds=30)),
        ('url = "postgresql://u:pw@db/ab"\nlease = "2m"', timedelta(minutes=2)),
        ('url = "sqlite:///./data/a.db"\nlease = "45s"', timedelta(seconds=45)),
    ],
)
def test_the_lease_defaults_by_backend_and_can_be_set(
    tmp_path: Path, store: str, expected: timedelta
) -> None:
    config = load_config(write(tmp_path, f"[store]\n{store}\n"), {})
    assert config.store.lease_for_claims == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"5s"', "store.lease: Input should be greater than or equal to 15 seconds"),
        ('"2h"', "store.lease: Input should be less than or equal to 1 hour"),
        ('"soon"', "store.lease:"),
    ],
)
def test_a_bad_lease_is_a_config_error_naming_file_and_key(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f'[store]\nurl = "postgresql://u:secret-pw@db/ab"\nlease = {value}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert message in text
    assert "secret-pw" not in text


# -- PostgreSQL: renewal ---------------------------------------------------------


async def test_a_live_replica_keeps_its_leases_and_a_stopped_one_lets_them_go(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database()
    # Far shorter than any real lease, so the test runs in seconds: renewed every 0.2 s.
    lease = timedelta(seconds=0.6)
    metrics = Metrics()
    holder = PostgresOutboxStore(PostgresDatabase(url, pool_size=2), replica="holder")
    async with opened(
        PostgresOutboxStore(PostgresDatabase(url, pool_size=2), replica="other", metrics=metrics)
    ) as other:
        await holder.open()
        try:
            delivery_id = int(await holder.enqueue(make_delivery(datetime.now(UTC))))
            [claimed] = await holder.claim_due(datetime.now(UTC), limit=10, lease=lease)
            assert claimed.id == delivery_id
            # Three leases long: without renewal the other replica would have it.
            for _ in range(6):
                await asyncio.sleep(lease.total_seconds() / 2)
                assert await other.claim_due(datetime.now(UTC), limit=10, lease=lease) == []
            assert await holder.next_due_at() is not None
        finally:
            await holder.close()
        # Stopped mid-work (as a kill would stop it): its lease runs out, the other takes over.
        await asyncio.sleep(lease.total_seconds() + 0.3)
        [taken] = await other.claim_due(datetime.now(UTC), limit=10, lease=lease)
        assert taken.id == delivery_id
    assert metrics.registry.get_sample_value("alertbridge_outbox_lease_takeovers_total") == 1


async def test_renewal_lets_go_of_what_is_finished_or_taken_over(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    lease = timedelta(minutes=1)
    async with opened(PostgresOutboxStore(PostgresDatabase(url, pool_size=2), replica="a")) as a:
        now = datetime.now(UTC)
        first = int(await a.enqueue(make_delivery(now, request_id="r1")))
        second = int(await a.enqueue(make_delivery(now, request_id="r2")))
        assert len(await a.claim_due(now, limit=10, lease=lease)) == 2
        await a.mark_sent(first, now)
        keeper = a._leases
        later = now + timedelta(seconds=20)
        assert await keeper.renew(later) == 1  # the sent one has no lease left to renew
        assert await a.next_due_at() == later + lease
        await a.mark_sent(second, later)
        assert await keeper.renew(later) == 0
        assert keeper._held == {}


# -- the dispatcher claims with the configured lease ---------------------------------


def test_serve_claims_with_the_configured_lease(tmp_path: Path) -> None:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=1000002)])
    with wecom.serve() as api_base:
        bridge = AlertbridgeProcess(
            tmp_path,
            f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = 1000002
secret = "${{SECRET}}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
""",
            env={"SECRET": SECRET},
        )
        # The harness writes the [store] table (its url) itself: the lease goes in there.
        text = bridge.config_path.read_text(encoding="utf-8")
        bridge.config_path.write_text(
            text.replace("[store]\n", '[store]\nlease = "40s"\n', 1), encoding="utf-8"
        )
        bridge.start()
        try:
            wecom.add_fault(MESSAGE_SEND, Fault(delay=3))
            before = datetime.now(UTC)
            answer = httpx.post(
                f"{bridge.base_url}/alertmanager/oncall",
                content=marked_notification("mkLease1", "Lease"),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            leases: list[int] = []

            def leased() -> bool:
                with sqlite3.connect(f"file:{bridge.db_path}?mode=ro", uri=True) as db:
                    leases[:] = [r[0] for r in db.execute("SELECT lease_until FROM deliveries") if r[0]]
                return bool(leases)

            wait_until(leased, 10, "the claim")
            until = from_us(leases[0])
            assert before + timedelta(seconds=39) <= until <= datetime.now(UTC) + timedelta(seconds=40)
        finally:
            bridge.stop()
