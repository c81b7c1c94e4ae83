"""SqliteStateStore against a real SQLite file shared with an open outbox.

The promises pinned here are the ones users see: ``#27`` keeps naming the
same alert group, an ack silences exactly the unchanged repeats of what was
acknowledged, a WeCom callback acts once, a card's response_code is spent
once — and none of it disturbs the outbox living in the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.errors import StoreError
from alertbridge.model import AlertGroup, Status
from alertbridge.stores import DeliveryStatus, NewDelivery
from alertbridge.stores.sqlite import state as sqlite_state
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.outbox_schema import SCHEMA_VERSION as OUTBOX_SCHEMA_VERSION
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.stores.sqlite.state_schema import COMPONENT, SCHEMA_VERSION
from alertbridge.stores.state import StateStore
from alertbridge.stores.state_codec import TITLE_MAX, ref_title
from alertbridge.testing.store_contract import OPS, T0, at, opened
from alertbridge.testing.store_contract import make_ref_group as make_group
from tests.sqlite_probes import pragmas, write_locked


def test_implements_the_protocol(db_path: Path) -> None:
    state: StateStore = SqliteStateStore(db_path)  # checked by mypy
    assert state is not None


# -- references --------------------------------------------------------------------


_FPS = st.frozensets(st.sampled_from(["a", "b", "c"]))
_STEPS = st.lists(st.one_of(st.just(None), _FPS), min_size=1, max_size=12)  # None = ack


@settings(max_examples=40, deadline=None)
@given(_STEPS)
def test_ack_rules_match_a_simple_model(steps: list[frozenset[str] | None]) -> None:
    """Any sequence of notifications and acks: changed, suppressed and the
    ack follow the rule in a few lines of plain Python."""

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with opened(SqliteStateStore(Path(tmp) / "state.db")) as state:
                previous: frozenset[str] | None = None
                acked = False
                ref: int | None = None
                for i, step in enumerate(steps):
                    now = at(i)
                    if step is None:
                        result = await state.set_ack(ref, "u", now) if ref is not None else None
                        assert (result is not None) == (ref is not None)
                        acked = ref is not None
                        continue
                    group = make_group(firing=sorted(step), resolved=sorted({"a", "b", "c"} - step))
                    update = await state.record_notification("ops", group, OPS, now)
                    changed = previous != step
                    # A group firing again after it resolved starts unacknowledged.
                    new_episode = bool(step) and previous is not None and not previous
                    acked = acked and not new_episode
                    assert update.changed == changed
                    assert update.suppressed == (acked and bool(step) and not changed)
                    assert (update.ref.ack is not None) == acked
                    assert update.ref.firing == bool(step)
                    assert ref is None or update.ref.ref == ref
                    ref, previous = update.ref.ref, step

    asyncio.run(run())


def test_title_prefers_alertname_then_group_labels_then_key() -> None:
    assert ref_title(make_group("HighCPU")) == "HighCPU"

    # No common alertname, but every alert has the same one.
    assert ref_title(make_group("DiskFull", common_alertname=False)) == "DiskFull"

    mixed = make_group("X", common_alertname=False, group_labels={"team": "db", "env": "prod"})
    mixed = AlertGroup(
        source=mixed.source,
        status=mixed.status,
        group_key=mixed.group_key,
        alerts=(
            *mixed.alerts,
            *make_group("Y", firing=("fp-y",)).alerts,
        ),
        group_labels=mixed.group_labels,
    )
    assert ref_title(mixed) == "env=prod, team=db"

    no_labels = AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key="{}:{}",
        alerts=mixed.alerts,
    )
    assert ref_title(no_labels) == "{}:{}"

    long = ref_title(make_group("A" * 200))
    assert len(long) == TITLE_MAX and long.endswith("…")


# -- who was sent what -----------------------------------------------------------------


# -- callback dedup ----------------------------------------------------------------------


# -- silences ------------------------------------------------------------------------------


# -- audit -----------------------------------------------------------------------------------


# -- cards ----------------------------------------------------------------------------------------


# -- prune -------------------------------------------------------------------------------------------


async def test_prune_handles_more_refs_than_one_chunk(
    state: SqliteStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_state, "_PRUNE_CHUNK", 3)
    refs = []
    for i in range(7):
        update = await state.record_notification(
            "ops", make_group(f"G{i}", firing=(), resolved=("fp",)), OPS, at(0)
        )
        refs.append(update.ref.ref)
    kept = (await state.record_notification("ops", make_group("Firing"), OPS, at(0))).ref.ref
    await state.record_sent(refs[-1], ["zhangsan"], at(0))
    assert await state.prune(at(60), timedelta(minutes=1)) == 7 + 1
    assert [ref for ref in [*refs, kept] if await state.get_ref(ref) is not None] == [kept]


# -- persistence, coexistence, failures ------------------------------------------------------------


async def test_coexists_with_the_outbox_in_one_file(
    db_path: Path, outbox: SqliteOutboxStore, state: SqliteStateStore
) -> None:
    delivery = NewDelivery(
        receiver="ops", channel="app", recipients=OPS, group=make_group(), request_id="r1", accepted_at=T0
    )
    ids = await asyncio.gather(*(outbox.enqueue(delivery) for _ in range(5)))
    updates = await asyncio.gather(
        *(state.record_notification("ops", make_group(f"G{i}"), OPS, at(0)) for i in range(5))
    )
    claimed = await outbox.claim_due(T0, limit=10, lease=timedelta(minutes=1))

    assert [d.id for d in claimed] == sorted(ids)
    assert len({u.ref.ref for u in updates}) == 5
    assert await outbox.count(DeliveryStatus.PENDING) == 5

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == OUTBOX_SCHEMA_VERSION
        assert conn.execute("SELECT component, version FROM schema_versions").fetchall() == [
            (COMPONENT, SCHEMA_VERSION)
        ]
    finally:
        conn.close()


async def test_state_first_then_outbox_on_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "alertbridge.db"
    async with (
        opened(SqliteStateStore(path)) as state,
        # The outbox then sees user_version 0 and creates its own schema.
        opened(SqliteOutboxStore(path)) as outbox,
    ):
        assert await outbox.count(DeliveryStatus.PENDING) == 0
        assert (await state.record_notification("ops", make_group(), OPS, at(0))).ref.ref >= 1


async def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    """A server and a CLI may open a brand-new file at the same moment."""
    path = tmp_path / "alertbridge.db"
    stores = [SqliteStateStore(path) for _ in range(4)]
    outbox = SqliteOutboxStore(path)
    try:
        for _ in range(3):
            opened = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
            assert opened == [None] * 4
            for s in stores:
                await s.close()
            path.unlink()
        # The outbox's own open does not retry its WAL switch, so it joins
        # only once the file exists; the state stores still open together.
        await outbox.open()
        opened = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        assert opened == [None] * 4
        refs = [
            (await s.record_notification("ops", make_group(), OPS, at(i))).ref.ref
            for i, s in enumerate(stores)
        ]
        assert len(set(refs)) == 1
    finally:
        for s in stores:
            await s.close()
        await outbox.close()


async def test_connection_is_configured_for_durability(state: SqliteStateStore) -> None:
    assert await pragmas(state, "journal_mode", "synchronous", "busy_timeout") == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 5000,
    }


async def test_newer_schema_is_refused(db_path: Path) -> None:
    state = SqliteStateStore(db_path)
    await state.open()
    await state.close()
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute(
                "UPDATE schema_versions SET version = ? WHERE component = ?", (SCHEMA_VERSION + 1, COMPONENT)
            )
    finally:
        conn.close()
    with pytest.raises(StoreError, match="newer"):
        await SqliteStateStore(db_path).open()


async def test_not_open_is_a_store_error(db_path: Path) -> None:
    state = SqliteStateStore(db_path)
    with pytest.raises(StoreError, match="not open"):
        await state.get_ref(1)
    with pytest.raises(StoreError, match="not open"):
        await state.claim_callback("k", at(0), timedelta(minutes=1))


async def test_not_a_database_is_a_store_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an sqlite database, just some junk bytes" * 100)
    with pytest.raises(StoreError):
        await SqliteStateStore(db_path).open()


async def test_locked_database_is_a_store_error_and_the_store_recovers(db_path: Path) -> None:
    async with opened(SqliteStateStore(db_path, busy_timeout=timedelta(milliseconds=50))) as state:
        ref = (await state.record_notification("ops", make_group(), OPS, at(0))).ref.ref
        with write_locked(db_path):
            with pytest.raises(StoreError, match="locked"):
                await state.record_notification("ops", make_group(), OPS, at(1))
            with pytest.raises(StoreError, match="locked"):
                await state.claim_callback("k", at(1), timedelta(minutes=1))
            with pytest.raises(StoreError, match="locked"):
                await state.set_ack(ref, "zhangsan", at(1))
            # Reads still work in WAL mode while another connection writes.
            assert await state.get_ref(ref) is not None

        assert await state.claim_callback("k", at(1), timedelta(minutes=1))
        acked = await state.set_ack(ref, "zhangsan", at(2))
        assert acked is not None and acked.ack is not None
