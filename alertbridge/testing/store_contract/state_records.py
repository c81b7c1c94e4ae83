"""The state contract, part two: silences, audit, cards, sent messages,
pruning, reopening and resolutions."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from alertbridge.stores import OutboxStore
from alertbridge.stores.state import (
    Attachment,
    AuditEntry,
    CardRecord,
    Resolution,
    ResolutionState,
    SentMessage,
    SilenceRecord,
    StateStore,
)
from alertbridge.testing.store_contract.helpers import OPS, MakeStores, at, make_ref_group, opened, silence


class StateRecordsContract:
    """Silences, audit, cards, pruning and resolutions (collected through ``StateContract``)."""

    async def test_silence_lifecycle(self, store: StateStore) -> None:
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

    async def test_add_silence_with_the_same_id_replaces(self, store: StateStore) -> None:
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

    async def test_audit_newest_first_with_ids(self, store: StateStore) -> None:
        entries = [
            AuditEntry(at=at(0), user="zhangsan", action="ack", ref=1, result="ok"),
            AuditEntry(
                at=at(1), user="lisi", action="silence", ref=1, result="ok", detail="2h", silence_id="s1"
            ),
            AuditEntry(at=at(1), user="wangwu", action="help", ref=None, result="ok"),
            AuditEntry(
                at=at(2), user="lisi", action="button:ack", ref=2, result="refused", detail="not allowed"
            ),
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

    async def test_attachments_sit_beside_their_audit_row(self, store: StateStore) -> None:
        await store.add_audit(AuditEntry(at=at(0), user="zhangsan", action="ack", ref=7, result="ok"))
        await store.add_audit(AuditEntry(at=at(1), user="zhangsan", action="help", ref=None, result="ok"))
        await store.add_audit(AuditEntry(at=at(2), user="lisi", action="ack", ref=9, result="ok"))
        # The reference of the member's most recent action that named one.
        assert await store.latest_audit_ref("zhangsan") == 7
        assert await store.latest_audit_ref("wangwu") is None

        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
        entry = AuditEntry(
            at=at(3), user="zhangsan", action="attach:image", ref=7, result="ok", detail="截图.png"
        )
        audit_id = await store.add_attachment(entry, Attachment("image", "截图.png", "image/png", "m-1", png))
        listed = await store.list_audit(10)
        assert listed[0] == replace(entry, id=audit_id)
        kept = await store.get_attachment(audit_id)
        assert kept == Attachment("image", "截图.png", "image/png", "m-1", png, audit_id=audit_id)
        assert await store.get_attachment(listed[1].id or 0) is None
        assert await store.latest_audit_ref("zhangsan") == 7

    async def test_card_response_code_is_usable_once(self, store: StateStore) -> None:
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
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

    async def test_card_of_an_unknown_ref_is_not_saved(self, store: StateStore) -> None:
        await store.save_card(
            CardRecord(task_id="t", ref=404, app="a", users=(), response_code="c", response_code_at=at(0))
        )
        assert await store.cards_for_ref(404) == []
        assert await store.get_card("t") is None
        assert await store.use_response_code("t") is None

    async def test_a_sent_message_is_taken_once_and_pruned_with_its_ref(self, store: StateStore) -> None:
        """What ``on_resolve = "recall"`` relies on: messages kept per reference,
        oldest first; each taken by exactly one caller; none for a gone reference."""
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        later = SentMessage(msgid="m-2", ref=ref, app="ops-app", sent_at=at(2))
        first = SentMessage(msgid="m-1", ref=ref, app="ops-app", sent_at=at(1))
        await store.save_sent_message(later)
        await store.save_sent_message(first)
        await store.save_sent_message(first)  # a retried after_sent changes nothing
        await store.save_sent_message(SentMessage(msgid="m-x", ref=404, app="a", sent_at=at(1)))
        assert await store.sent_messages_for_ref(ref) == [first, later]
        assert await store.sent_messages_for_ref(404) == []

        taken = await asyncio.gather(*(store.take_sent_message("m-1") for _ in range(5)))
        assert taken.count(True) == 1
        assert not await store.take_sent_message("m-x")
        assert await store.sent_messages_for_ref(ref) == [later]
        await store.save_sent_message(first)  # put back after a recall that failed
        assert await store.sent_messages_for_ref(ref) == [first, later]

        await store.record_notification("ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(3))
        await store.prune(at(3) + timedelta(days=8), timedelta(days=7))
        assert await store.sent_messages_for_ref(ref) == []
        assert not await store.take_sent_message("m-2")

    async def test_prune_forgets_old_resolved_refs_keys_and_silences_but_not_audit(
        self,
        store: StateStore,
    ) -> None:
        retention = timedelta(days=7)
        old = (await store.record_notification("ops", make_ref_group("Old"), OPS, at(0))).ref.ref
        await store.record_notification(
            "ops", make_ref_group("Old", firing=(), resolved=("fp-a",)), OPS, at(10)
        )
        recent = (await store.record_notification("ops", make_ref_group("Recent"), OPS, at(0))).ref.ref
        now = at(10) + retention + timedelta(minutes=1)
        await store.record_notification(
            "ops", make_ref_group("Recent", firing=(), resolved=("fp-a",)), OPS, now - timedelta(days=1)
        )
        firing = (await store.record_notification("ops", make_ref_group("Firing"), OPS, at(0))).ref.ref
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
        back = await store.record_notification("ops", make_ref_group("Old"), OPS, now)
        assert back.changed and back.ref.ref > firing

        assert await store.prune(now, retention) == 0

    async def test_state_survives_close_and_reopen(
        self, make_stores: MakeStores, outbox: OutboxStore
    ) -> None:
        store = make_stores().state
        await store.open()
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
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

        async with opened(make_stores().state) as reopened:
            assert await reopened.get_ref(ref) == before
            latest = await reopened.latest_ref_for_user("zhangsan")
            assert latest is not None and latest.ref == ref
            assert not await reopened.claim_callback("k", at(1), timedelta(minutes=5))
            assert await reopened.get_silence("s1") == silence("s1", ref=ref)
            assert len(await reopened.list_audit(10)) == 1
            assert await reopened.use_response_code("t") == "c"
            repeat = await reopened.record_notification("ops", make_ref_group(), OPS, at(5))
            assert repeat.suppressed and repeat.ref.ref == ref
            new = await reopened.record_notification("ops", make_ref_group("Other"), OPS, at(5))
            assert new.ref.ref > ref

    async def test_a_resolution_is_worked_by_one_upkeep_and_decided_once(self, store: StateStore) -> None:
        """The send path records a resolved delivery's work; one upkeep at a time
        holds it; its first outcome is the one every later claim reads."""
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        lease = timedelta(seconds=30)
        first = await store.request_resolution(7, ref, "ops", at(1))
        assert first == Resolution(delivery_id=7, ref=ref, receiver="ops", requested_at=at(1))
        # Asked again (the delivery claimed again before the outcome): nothing changes.
        assert await store.request_resolution(7, ref, "ops", at(2)) == first
        assert await store.get_resolution(7) == first
        assert await store.get_resolution(8) is None
        later = await store.request_resolution(8, ref, "ops", at(3))

        # Concurrent upkeeps: each pending resolution goes to one of them, oldest first.
        claims = await asyncio.gather(*(store.claim_resolutions(at(4), lease, 10) for _ in range(4)))
        claimed = [r for claim in claims for r in claim]
        assert sorted(r.delivery_id for r in claimed) == [7, 8]
        assert all([r.delivery_id for r in claim] == sorted(r.delivery_id for r in claim) for claim in claims)
        assert await store.claim_resolutions(at(4), lease, 10) == []
        # A holder that went away (a crash, a reload) lets go when its lease runs out.
        assert [r.delivery_id for r in await store.claim_resolutions(at(4) + lease, lease, 1)] == [7]

        done = await store.decide_resolution(7, ResolutionState.DONE, at(5))
        assert done == replace(first, state=ResolutionState.DONE, decided_at=at(5))
        # The first decision counts: a late "failed" (patience ran out) changes nothing.
        assert await store.decide_resolution(7, ResolutionState.FAILED, at(6)) == done
        failed = await store.decide_resolution(8, ResolutionState.FAILED, at(6))
        assert failed == replace(later, state=ResolutionState.FAILED, decided_at=at(6))
        assert await store.decide_resolution(9, ResolutionState.DONE, at(6)) is None
        assert await store.claim_resolutions(at(60), lease, 10) == []

    async def test_prune_forgets_decided_resolutions_and_those_of_gone_refs(self, store: StateStore) -> None:
        retention = timedelta(days=7)
        gone = (await store.record_notification("ops", make_ref_group("Gone"), OPS, at(0))).ref.ref
        await store.record_notification(
            "ops", make_ref_group("Gone", firing=(), resolved=("fp-a",)), OPS, at(1)
        )
        live = (await store.record_notification("ops", make_ref_group("Live"), OPS, at(0))).ref.ref
        await store.request_resolution(1, gone, "ops", at(1))
        await store.request_resolution(2, live, "ops", at(1))
        await store.decide_resolution(2, ResolutionState.DONE, at(2))
        await store.request_resolution(3, live, "ops", at(1))
        now = at(2) + retention + timedelta(minutes=1)
        await store.request_resolution(4, live, "ops", now)
        await store.decide_resolution(4, ResolutionState.FAILED, now)

        # The gone reference and its pending resolution, the old decided one.
        assert await store.prune(now, retention) == 1 + 1 + 1
        assert await store.get_resolution(1) is None
        assert await store.get_resolution(2) is None
        assert (pending := await store.get_resolution(3)) is not None
        assert pending.state is ResolutionState.PENDING
        assert (recent := await store.get_resolution(4)) is not None
        assert recent.state is ResolutionState.FAILED

    async def test_naive_datetime_is_refused(self, store: StateStore) -> None:
        with pytest.raises(ValueError, match="naive"):
            await store.record_notification("ops", make_ref_group(), OPS, datetime(2026, 5, 1))
        # The store is still usable afterwards.
        assert (await store.record_notification("ops", make_ref_group(), OPS, at(0))).changed
