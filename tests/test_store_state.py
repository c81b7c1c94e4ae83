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
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.stores import DeliveryStatus, NewDelivery
from alertbridge.stores.sqlite import state as sqlite_state
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.outbox_schema import SCHEMA_VERSION as OUTBOX_SCHEMA_VERSION
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.stores.sqlite.state_rows import TITLE_MAX, ref_title
from alertbridge.stores.sqlite.state_schema import COMPONENT, SCHEMA_VERSION
from alertbridge.stores.state import AuditEntry, CardRecord, SilenceRecord, StateStore
from tests.store_fixtures import T0, opened, pragmas, write_locked

OPS = Recipients(to_user=("zhangsan", "lisi"), to_party=("2",))


def make_group(
    name: str = "HighCPU",
    *,
    firing: Iterable[str] = ("fp-a",),
    resolved: Iterable[str] = (),
    key: str | None = None,
    group_labels: dict[str, str] | None = None,
    common_alertname: bool = True,
) -> AlertGroup:
    """A group whose alerts are ``firing`` and ``resolved`` fingerprints."""
    alerts = tuple(
        Alert(
            status=status,
            labels={"alertname": name, "instance": fp, "severity": "critical"},
            annotations={"summary": "CPU 使用率过高"},
            starts_at=T0 - timedelta(minutes=5),
            ends_at=None if status is Status.FIRING else T0,
            fingerprint=fp,
        )
        for fps, status in ((firing, Status.FIRING), (resolved, Status.RESOLVED))
        for fp in fps
    )
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED,
        group_key=key if key is not None else '{}:{alertname="' + name + '"}',
        alerts=alerts,
        group_labels={"alertname": name} if group_labels is None else group_labels,
        common_labels={"alertname": name, "severity": "critical"} if common_alertname else {},
        external_url="http://alertmanager:9093",
        source_receiver="wecom-ops",
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "alertbridge.db"


@pytest.fixture
async def outbox(db_path: Path) -> AsyncIterator[SqliteOutboxStore]:
    async with opened(SqliteOutboxStore(db_path)) as s:
        yield s


@pytest.fixture
async def store(db_path: Path, outbox: SqliteOutboxStore) -> AsyncIterator[SqliteStateStore]:
    """The state store, opened while the outbox has the same file open."""
    async with opened(SqliteStateStore(db_path)) as s:
        yield s


def test_implements_the_protocol(db_path: Path) -> None:
    store: StateStore = SqliteStateStore(db_path)  # checked by mypy
    assert store is not None


# -- references --------------------------------------------------------------------


async def test_repeat_notifications_keep_the_number(store: SqliteStateStore) -> None:
    first = await store.record_notification("ops", make_group(), OPS, at(0))
    again = await store.record_notification("ops", make_group(), OPS, at(5))
    third = await store.record_notification("ops", make_group(), OPS, at(10))

    assert first.ref.ref == again.ref.ref == third.ref.ref
    assert first.changed and not again.changed and not third.changed
    assert third.ref.created_at == at(0)
    assert third.ref.updated_at == at(10)


async def test_new_group_or_receiver_gets_a_new_increasing_number(store: SqliteStateStore) -> None:
    cpu = await store.record_notification("ops", make_group("HighCPU"), OPS, at(0))
    disk = await store.record_notification("ops", make_group("DiskFull"), OPS, at(1))
    cpu_dba = await store.record_notification("dba", make_group("HighCPU"), OPS, at(2))

    assert cpu.ref.ref < disk.ref.ref < cpu_dba.ref.ref
    assert cpu.ref.ref >= 1
    assert disk.changed and cpu_dba.changed
    assert (await store.record_notification("ops", make_group("HighCPU"), OPS, at(3))).ref.ref == cpu.ref.ref


async def test_stored_fields_round_trip(store: SqliteStateStore) -> None:
    group = make_group(firing=("fp-a", "fp-b"), resolved=("fp-c",))
    update = await store.record_notification("ops", group, OPS, at(0))
    ref = await store.get_ref(update.ref.ref)

    assert ref == update.ref
    assert ref is not None
    assert ref.receiver == "ops"
    assert ref.source == "alertmanager"
    assert ref.group_key == group.group_key
    assert ref.external_url == "http://alertmanager:9093"
    assert ref.title == "HighCPU"
    assert ref.recipients == OPS
    assert ref.firing and ref.resolved_at is None and ref.ack is None
    assert [(a.fingerprint, a.firing) for a in ref.alerts] == [
        ("fp-a", True),
        ("fp-b", True),
        ("fp-c", False),
    ]
    assert dict(ref.alerts[0].labels) == {"alertname": "HighCPU", "instance": "fp-a", "severity": "critical"}


async def test_unknown_ref_is_none(store: SqliteStateStore) -> None:
    assert await store.get_ref(404) is None
    assert await store.set_ack(404, "zhangsan", at(0)) is None


async def test_resolved_then_firing_again_keeps_the_number(store: SqliteStateStore) -> None:
    fired = await store.record_notification("ops", make_group(), OPS, at(0))
    resolved = await store.record_notification("ops", make_group(firing=(), resolved=("fp-a",)), OPS, at(5))
    repeat = await store.record_notification("ops", make_group(firing=(), resolved=("fp-a",)), OPS, at(9))
    again = await store.record_notification("ops", make_group(), OPS, at(60))

    assert fired.ref.ref == resolved.ref.ref == again.ref.ref
    assert not resolved.ref.firing and resolved.ref.resolved_at == at(5)
    assert repeat.ref.resolved_at == at(5), "a repeated resolve must not move the resolve time"
    assert again.ref.firing and again.ref.resolved_at is None
    assert resolved.changed and again.changed


async def test_first_notification_may_already_be_resolved(store: SqliteStateStore) -> None:
    update = await store.record_notification("ops", make_group(firing=(), resolved=("fp-a",)), OPS, at(0))
    assert update.changed and not update.suppressed
    assert not update.ref.firing and update.ref.resolved_at == at(0)


async def test_ack_is_kept_on_an_identical_repeat_which_is_suppressed(store: SqliteStateStore) -> None:
    ref = (await store.record_notification("ops", make_group(firing=("a", "b")), OPS, at(0))).ref.ref
    acked = await store.set_ack(ref, "zhangsan", at(1))
    assert acked is not None and acked.ack is not None
    assert (acked.ack.user, acked.ack.at) == ("zhangsan", at(1))

    repeat = await store.record_notification("ops", make_group(firing=("b", "a")), OPS, at(5))
    assert repeat.suppressed and not repeat.changed
    assert repeat.ref.ack == acked.ack

    # A resolved alert joining the group changes nothing that still fires.
    with_resolved = await store.record_notification(
        "ops", make_group(firing=("a", "b"), resolved=("c",)), OPS, at(6)
    )
    assert with_resolved.suppressed and not with_resolved.changed


async def test_a_retried_delivery_keeps_its_first_verdict(store: SqliteStateStore) -> None:
    ref = (
        await store.record_notification("ops", make_group(firing=("a",)), OPS, at(0), delivery_id=1)
    ).ref.ref
    await store.set_ack(ref, "zhangsan", at(1))
    grew = await store.record_notification("ops", make_group(firing=("a", "b")), OPS, at(5), delivery_id=2)
    assert grew.changed and not grew.suppressed
    # Its send failed and is retried: it is still news, not a repeat of itself.
    retried = await store.record_notification("ops", make_group(firing=("a", "b")), OPS, at(5), delivery_id=2)
    assert not retried.suppressed and retried.ref.ref == ref
    # Another notification with the same alerts is the repeat that is held back.
    repeat = await store.record_notification("ops", make_group(firing=("a", "b")), OPS, at(9), delivery_id=3)
    assert repeat.suppressed


async def test_ack_holds_when_the_firing_alerts_change_but_the_change_is_sent(
    store: SqliteStateStore,
) -> None:
    ref = (await store.record_notification("ops", make_group(firing=("a", "b")), OPS, at(0))).ref.ref
    await store.set_ack(ref, "zhangsan", at(1))

    grew = await store.record_notification("ops", make_group(firing=("a", "b", "c")), OPS, at(5))
    assert grew.changed and not grew.suppressed
    assert grew.ref.ack is not None and grew.ref.ack.user == "zhangsan"

    shrank = await store.record_notification(
        "ops", make_group(firing=("a",), resolved=("b", "c")), OPS, at(7)
    )
    assert shrank.changed and not shrank.suppressed and shrank.ref.ack is not None


async def test_ack_shows_on_the_resolution_and_is_cleared_when_it_fires_again(
    store: SqliteStateStore,
) -> None:
    ref = (await store.record_notification("ops", make_group(), OPS, at(0))).ref.ref
    await store.set_ack(ref, "zhangsan", at(1))

    resolved = await store.record_notification("ops", make_group(firing=(), resolved=("fp-a",)), OPS, at(5))
    assert resolved.ref.ack is not None and not resolved.suppressed

    refired = await store.record_notification("ops", make_group(), OPS, at(10))
    assert refired.ref.ack is None and not refired.suppressed and refired.changed


async def test_not_acked_is_never_suppressed(store: SqliteStateStore) -> None:
    await store.record_notification("ops", make_group(), OPS, at(0))
    repeat = await store.record_notification("ops", make_group(), OPS, at(5))
    assert not repeat.changed and not repeat.suppressed


async def test_ack_of_a_resolved_ref_does_not_suppress_its_refiring(store: SqliteStateStore) -> None:
    ref = (await store.record_notification("ops", make_group(), OPS, at(0))).ref.ref
    await store.record_notification("ops", make_group(firing=(), resolved=("fp-a",)), OPS, at(5))
    await store.set_ack(ref, "zhangsan", at(6))
    refired = await store.record_notification("ops", make_group(), OPS, at(10))
    assert refired.changed and not refired.suppressed and refired.ref.ack is None


_FPS = st.frozensets(st.sampled_from(["a", "b", "c"]))
_STEPS = st.lists(st.one_of(st.just(None), _FPS), min_size=1, max_size=12)  # None = ack


@settings(max_examples=40, deadline=None)
@given(_STEPS)
def test_ack_rules_match_a_simple_model(steps: list[frozenset[str] | None]) -> None:
    """Any sequence of notifications and acks: changed, suppressed and the
    ack follow the rule in a few lines of plain Python."""

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with opened(SqliteStateStore(Path(tmp) / "state.db")) as store:
                previous: frozenset[str] | None = None
                acked = False
                ref: int | None = None
                for i, step in enumerate(steps):
                    now = at(i)
                    if step is None:
                        result = await store.set_ack(ref, "u", now) if ref is not None else None
                        assert (result is not None) == (ref is not None)
                        acked = ref is not None
                        continue
                    group = make_group(firing=sorted(step), resolved=sorted({"a", "b", "c"} - step))
                    update = await store.record_notification("ops", group, OPS, now)
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


async def test_sent_index_orders_by_last_sent_and_filters_firing(store: SqliteStateStore) -> None:
    cpu = (await store.record_notification("ops", make_group("HighCPU"), OPS, at(0))).ref.ref
    disk = (await store.record_notification("ops", make_group("DiskFull"), OPS, at(0))).ref.ref
    mem = (await store.record_notification("ops", make_group("LowMem"), OPS, at(0))).ref.ref

    await store.record_sent(cpu, ["zhangsan", "lisi", "zhangsan"], at(1))
    await store.record_sent(disk, ["zhangsan"], at(2))
    await store.record_sent(mem, ["lisi"], at(3))
    await store.record_sent(cpu, ["zhangsan"], at(4))  # re-sent: newest again for zhangsan

    latest = await store.latest_ref_for_user("zhangsan")
    assert latest is not None and latest.ref == cpu
    assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [cpu, disk]
    assert [r.ref for r in await store.refs_for_user("lisi", firing_only=False, limit=10)] == [mem, cpu]
    assert [r.ref for r in await store.refs_for_user("lisi", firing_only=False, limit=1)] == [mem]

    await store.record_notification("ops", make_group("HighCPU", firing=(), resolved=("fp-a",)), OPS, at(5))
    assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=True, limit=10)] == [disk]
    assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [cpu, disk]
    latest = await store.latest_ref_for_user("zhangsan")
    assert latest is not None and latest.ref == cpu and not latest.firing


async def test_sent_index_for_unknown_user_or_ref(store: SqliteStateStore) -> None:
    assert await store.latest_ref_for_user("nobody") is None
    assert await store.refs_for_user("nobody", firing_only=False, limit=10) == []
    await store.record_sent(404, ["zhangsan"], at(0))  # unknown reference: nothing remembered
    await store.record_sent(404, [], at(0))
    assert await store.latest_ref_for_user("zhangsan") is None


async def test_list_refs_newest_updated_first(store: SqliteStateStore) -> None:
    a = (await store.record_notification("ops", make_group("A"), OPS, at(0))).ref.ref
    b = (await store.record_notification("ops", make_group("B"), OPS, at(1))).ref.ref
    c = (await store.record_notification("ops", make_group("C"), OPS, at(2))).ref.ref
    await store.record_notification("ops", make_group("A"), OPS, at(3))

    assert [r.ref for r in await store.list_refs(10)] == [a, c, b]
    assert [r.ref for r in await store.list_refs(2)] == [a, c]


# -- callback dedup ----------------------------------------------------------------------


async def test_claim_callback_once_within_ttl(store: SqliteStateStore) -> None:
    ttl = timedelta(minutes=5)
    assert await store.claim_callback("msg-1", at(0), ttl)
    assert not await store.claim_callback("msg-1", at(1), ttl)
    assert not await store.claim_callback("msg-1", at(4.9), ttl)
    assert await store.claim_callback("msg-2", at(1), ttl)


async def test_expired_callback_key_can_be_claimed_again(store: SqliteStateStore) -> None:
    ttl = timedelta(minutes=5)
    assert await store.claim_callback("msg-1", at(0), ttl)
    assert await store.claim_callback("msg-1", at(5), ttl)  # expiry is exclusive
    assert not await store.claim_callback("msg-1", at(9), ttl), "the re-claim starts a new ttl"
    assert await store.claim_callback("msg-1", at(10), ttl)


async def test_concurrent_claims_exactly_one_wins(store: SqliteStateStore) -> None:
    results = await asyncio.gather(
        *(store.claim_callback("dup", at(0), timedelta(minutes=5)) for _ in range(20))
    )
    assert results.count(True) == 1


async def test_concurrent_claims_on_two_connections_exactly_one_wins(
    store: SqliteStateStore, db_path: Path
) -> None:
    async with opened(SqliteStateStore(db_path)) as other:
        for round_ in range(5):
            key = f"dup-{round_}"
            results = await asyncio.gather(
                *(
                    (store if i % 2 else other).claim_callback(key, at(0), timedelta(minutes=5))
                    for i in range(20)
                )
            )
            assert results.count(True) == 1, results


# -- silences ------------------------------------------------------------------------------


def silence(silence_id: str, *, ref: int | None = 1, ends: float = 120, created: float = 0) -> SilenceRecord:
    return SilenceRecord(
        silence_id=silence_id,
        silencer="alertmanager",
        ref=ref,
        created_by="zhangsan",
        ends_at=at(ends),
        matchers='alertname="HighCPU", instance=~"a|b"',
        created_at=at(created),
    )


async def test_silence_lifecycle(store: SqliteStateStore) -> None:
    s1 = silence("s1", ends=120, created=0)
    s2 = silence("s2", ends=30, created=1)
    other = silence("s3", ref=2, created=2)
    free = silence("s4", ref=None, created=3)
    for record in (s1, s2, other, free):
        await store.add_silence(record)

    assert await store.get_silence("s1") == s1
    assert await store.get_silence("nope") is None
    assert await store.silences_for_ref(1, active_at=at(10)) == [s1, s2]
    assert await store.silences_for_ref(1, active_at=at(30)) == [s1], "ends_at is exclusive"
    assert await store.active_silences(at(10)) == [s1, s2, other, free]

    # The silencer re-created s1 with a later end: same record, new id.
    await store.replace_silence_id("s1", "s1b", at(240))
    assert await store.get_silence("s1") is None
    moved = await store.get_silence("s1b")
    assert moved is not None
    assert (moved.ends_at, moved.created_by, moved.ref, moved.matchers) == (
        at(240),
        "zhangsan",
        1,
        s1.matchers,
    )
    await store.replace_silence_id("gone", "whatever", at(1))  # unknown: no-op

    await store.mark_silence_expired("s1b", at(50))
    await store.mark_silence_expired("s1b", at(60))  # the first time counts
    expired = await store.get_silence("s1b")
    assert expired is not None and expired.expired_at == at(50)
    assert [s.silence_id for s in await store.silences_for_ref(1, active_at=at(10))] == ["s2"]
    assert [s.silence_id for s in await store.active_silences(at(40))] == ["s3", "s4"]


async def test_add_silence_with_the_same_id_replaces(store: SqliteStateStore) -> None:
    await store.add_silence(silence("s1", ends=10))
    via_ack = SilenceRecord(
        silence_id="s1",
        silencer="alertmanager",
        ref=7,
        created_by="lisi",
        ends_at=at(90),
        matchers='alertname="X"',
        created_at=at(1),
        via_ack=True,
    )
    await store.add_silence(via_ack)
    assert await store.get_silence("s1") == via_ack


# -- audit -----------------------------------------------------------------------------------


async def test_audit_newest_first_with_ids(store: SqliteStateStore) -> None:
    entries = [
        AuditEntry(at=at(0), user="zhangsan", action="ack", ref=1, result="ok"),
        AuditEntry(at=at(1), user="lisi", action="silence", ref=1, result="ok", detail="2h", silence_id="s1"),
        AuditEntry(at=at(1), user="wangwu", action="help", ref=None, result="ok"),
        AuditEntry(at=at(2), user="lisi", action="button:ack", ref=2, result="refused", detail="not allowed"),
    ]
    for entry in entries:
        await store.add_audit(entry)

    listed = await store.list_audit(10)
    assert [e.user for e in listed] == ["lisi", "wangwu", "lisi", "zhangsan"]
    assert all(e.id is not None for e in listed)
    ids = [e.id for e in listed]
    assert len(set(ids)) == 4
    assert listed[2].silence_id == "s1" and listed[2].detail == "2h"
    assert listed[0].result == "refused" and listed[0].ref == 2
    assert [e.user for e in await store.list_audit(2)] == ["lisi", "wangwu"]

    assert [replace(e, id=None) for e in reversed(listed)] == entries


# -- cards ----------------------------------------------------------------------------------------


async def test_card_response_code_is_usable_once(store: SqliteStateStore) -> None:
    ref = (await store.record_notification("ops", make_group(), OPS, at(0))).ref.ref
    card = CardRecord(
        task_id="task-1",
        ref=ref,
        app="ops-app",
        users=("zhangsan", "lisi"),
        response_code="code-1",
        response_code_at=at(0),
    )
    await store.save_card(card)
    await store.save_card(
        CardRecord(
            task_id="task-2",
            ref=ref,
            app="ops-app",
            users=("wangwu",),
            response_code=None,
            response_code_at=None,
        )
    )
    assert [c.task_id for c in await store.cards_for_ref(ref)] == ["task-1", "task-2"]
    assert (await store.cards_for_ref(ref))[0] == card
    assert await store.get_card("task-1") == card
    assert await store.get_card("no-such-task") is None

    results = await asyncio.gather(*(store.use_response_code("task-1") for _ in range(5)))
    assert results.count("code-1") == 1 and results.count(None) == 4
    assert await store.use_response_code("task-2") is None
    assert await store.use_response_code("no-such-task") is None
    spent = (await store.cards_for_ref(ref))[0]
    assert spent.response_code is None and spent.response_code_at is None

    await store.set_response_code("task-1", "code-2", at(3))
    fresh = (await store.cards_for_ref(ref))[0]
    assert (fresh.response_code, fresh.response_code_at) == ("code-2", at(3))
    assert await store.use_response_code("task-1") == "code-2"
    assert await store.use_response_code("task-1") is None

    await store.set_response_code("no-such-task", "x", at(4))  # ignored


async def test_card_of_an_unknown_ref_is_not_saved(store: SqliteStateStore) -> None:
    await store.save_card(
        CardRecord(task_id="t", ref=404, app="a", users=(), response_code="c", response_code_at=at(0))
    )
    assert await store.cards_for_ref(404) == []
    assert await store.get_card("t") is None
    assert await store.use_response_code("t") is None


# -- prune -------------------------------------------------------------------------------------------


async def test_prune_forgets_old_resolved_refs_keys_and_silences_but_not_audit(
    store: SqliteStateStore,
) -> None:
    retention = timedelta(days=7)
    old = (await store.record_notification("ops", make_group("Old"), OPS, at(0))).ref.ref
    await store.record_notification("ops", make_group("Old", firing=(), resolved=("fp-a",)), OPS, at(10))
    recent = (await store.record_notification("ops", make_group("Recent"), OPS, at(0))).ref.ref
    now = at(10) + retention + timedelta(minutes=1)
    await store.record_notification(
        "ops", make_group("Recent", firing=(), resolved=("fp-a",)), OPS, now - timedelta(days=1)
    )
    firing = (await store.record_notification("ops", make_group("Firing"), OPS, at(0))).ref.ref
    for ref in (old, recent, firing):
        await store.record_sent(ref, ["zhangsan"], at(1))
        await store.save_card(
            CardRecord(
                task_id=f"t{ref}",
                ref=ref,
                app="a",
                users=("zhangsan",),
                response_code="c",
                response_code_at=at(1),
            )
        )

    await store.claim_callback("expired", at(0), timedelta(minutes=5))
    await store.claim_callback("live", now - timedelta(minutes=1), timedelta(minutes=5))

    await store.add_silence(silence("ran-out-long-ago", ref=old, ends=0))
    await store.add_silence(silence("expired-long-ago", ref=old, ends=10**6))
    await store.mark_silence_expired("expired-long-ago", at(1))
    await store.add_silence(silence("expired-recently", ref=recent, ends=10**6))
    await store.mark_silence_expired("expired-recently", now - timedelta(days=1))
    await store.add_silence(silence("active", ref=firing, ends=10**7))

    await store.add_audit(AuditEntry(at=at(0), user="zhangsan", action="ack", ref=old, result="ok"))

    deleted = await store.prune(now, retention)

    # old ref + its sent row + its card, one callback key, two silences.
    assert deleted == 3 + 1 + 2
    assert await store.get_ref(old) is None
    assert await store.get_ref(recent) is not None
    assert await store.get_ref(firing) is not None
    assert await store.cards_for_ref(old) == []
    assert await store.get_card(f"t{old}") is None
    assert len(await store.cards_for_ref(recent)) == 1
    assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [
        firing,
        recent,
    ]
    assert await store.claim_callback("expired", now, timedelta(minutes=5))
    assert not await store.claim_callback("live", now, timedelta(minutes=5))
    assert await store.get_silence("ran-out-long-ago") is None
    assert await store.get_silence("expired-long-ago") is None
    assert await store.get_silence("expired-recently") is not None
    assert await store.get_silence("active") is not None
    assert len(await store.list_audit(10)) == 1

    # The pruned group fires again: a new number, never the old one.
    back = await store.record_notification("ops", make_group("Old"), OPS, now)
    assert back.changed and back.ref.ref > firing

    assert await store.prune(now, retention) == 0


async def test_prune_handles_more_refs_than_one_chunk(
    store: SqliteStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_state, "_PRUNE_CHUNK", 3)
    refs = []
    for i in range(7):
        update = await store.record_notification(
            "ops", make_group(f"G{i}", firing=(), resolved=("fp",)), OPS, at(0)
        )
        refs.append(update.ref.ref)
    kept = (await store.record_notification("ops", make_group("Firing"), OPS, at(0))).ref.ref
    await store.record_sent(refs[-1], ["zhangsan"], at(0))
    assert await store.prune(at(60), timedelta(minutes=1)) == 7 + 1
    assert [r.ref for r in await store.list_refs(10)] == [kept]


# -- persistence, coexistence, failures ------------------------------------------------------------


async def test_state_survives_close_and_reopen(db_path: Path, outbox: SqliteOutboxStore) -> None:
    store = SqliteStateStore(db_path)
    await store.open()
    ref = (await store.record_notification("ops", make_group(), OPS, at(0))).ref.ref
    await store.set_ack(ref, "zhangsan", at(1))
    await store.record_sent(ref, ["zhangsan"], at(1))
    await store.claim_callback("k", at(0), timedelta(minutes=5))
    await store.add_silence(silence("s1", ref=ref))
    await store.add_audit(AuditEntry(at=at(1), user="zhangsan", action="ack", ref=ref, result="ok"))
    await store.save_card(
        CardRecord(
            task_id="t", ref=ref, app="a", users=("zhangsan",), response_code="c", response_code_at=at(1)
        )
    )
    before = await store.get_ref(ref)
    await store.close()
    await store.close()  # idempotent

    async with opened(SqliteStateStore(db_path)) as reopened:
        assert await reopened.get_ref(ref) == before
        latest = await reopened.latest_ref_for_user("zhangsan")
        assert latest is not None and latest.ref == ref
        assert not await reopened.claim_callback("k", at(1), timedelta(minutes=5))
        assert await reopened.get_silence("s1") == silence("s1", ref=ref)
        assert len(await reopened.list_audit(10)) == 1
        assert await reopened.use_response_code("t") == "c"
        repeat = await reopened.record_notification("ops", make_group(), OPS, at(5))
        assert repeat.suppressed and repeat.ref.ref == ref
        new = await reopened.record_notification("ops", make_group("Other"), OPS, at(5))
        assert new.ref.ref > ref


async def test_coexists_with_the_outbox_in_one_file(
    db_path: Path, outbox: SqliteOutboxStore, store: SqliteStateStore
) -> None:
    delivery = NewDelivery(
        receiver="ops", channel="app", recipients=OPS, group=make_group(), request_id="r1", accepted_at=T0
    )
    ids = await asyncio.gather(*(outbox.enqueue(delivery) for _ in range(5)))
    updates = await asyncio.gather(
        *(store.record_notification("ops", make_group(f"G{i}"), OPS, at(0)) for i in range(5))
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


async def test_connection_is_configured_for_durability(store: SqliteStateStore) -> None:
    assert await pragmas(store, "journal_mode", "synchronous", "busy_timeout") == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 5000,
    }


async def test_newer_schema_is_refused(db_path: Path) -> None:
    store = SqliteStateStore(db_path)
    await store.open()
    await store.close()
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
    store = SqliteStateStore(db_path)
    with pytest.raises(StoreError, match="not open"):
        await store.get_ref(1)
    with pytest.raises(StoreError, match="not open"):
        await store.claim_callback("k", at(0), timedelta(minutes=1))


async def test_not_a_database_is_a_store_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an sqlite database, just some junk bytes" * 100)
    with pytest.raises(StoreError):
        await SqliteStateStore(db_path).open()


async def test_locked_database_is_a_store_error_and_the_store_recovers(db_path: Path) -> None:
    async with opened(SqliteStateStore(db_path, busy_timeout=timedelta(milliseconds=50))) as store:
        ref = (await store.record_notification("ops", make_group(), OPS, at(0))).ref.ref
        with write_locked(db_path):
            with pytest.raises(StoreError, match="locked"):
                await store.record_notification("ops", make_group(), OPS, at(1))
            with pytest.raises(StoreError, match="locked"):
                await store.claim_callback("k", at(1), timedelta(minutes=1))
            with pytest.raises(StoreError, match="locked"):
                await store.set_ack(ref, "zhangsan", at(1))
            # Reads still work in WAL mode while another connection writes.
            assert await store.get_ref(ref) is not None

        assert await store.claim_callback("k", at(1), timedelta(minutes=1))
        acked = await store.set_ack(ref, "zhangsan", at(2))
        assert acked is not None and acked.ack is not None


async def test_naive_datetime_is_refused(store: SqliteStateStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.record_notification("ops", make_group(), OPS, datetime(2026, 5, 1))
    # The store is still usable afterwards.
    assert (await store.record_notification("ops", make_group(), OPS, at(0))).changed
