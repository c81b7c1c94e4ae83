"""The state contract, part one: alert numbers, acks, the sent index and
callback keys."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from alertbridge.stores.state import StateStore
from alertbridge.testing.store_contract.helpers import OPS, MakeStores, at, make_ref_group, opened


class StateRefsContract:
    """Numbers, acks, the sent index and callbacks (collected through ``StateContract``)."""

    async def test_repeat_notifications_keep_the_number(self, store: StateStore) -> None:
        first = await store.record_notification("ops", make_ref_group(), OPS, at(0))
        again = await store.record_notification("ops", make_ref_group(), OPS, at(5))
        third = await store.record_notification("ops", make_ref_group(), OPS, at(10))

        assert first.ref.ref == again.ref.ref == third.ref.ref
        assert first.changed and not again.changed and not third.changed
        assert third.ref.created_at == at(0)
        assert third.ref.updated_at == at(10)

    async def test_new_group_or_receiver_gets_a_new_increasing_number(self, store: StateStore) -> None:
        cpu = await store.record_notification("ops", make_ref_group("HighCPU"), OPS, at(0))
        disk = await store.record_notification("ops", make_ref_group("DiskFull"), OPS, at(1))
        cpu_dba = await store.record_notification("dba", make_ref_group("HighCPU"), OPS, at(2))

        assert cpu.ref.ref < disk.ref.ref < cpu_dba.ref.ref
        assert cpu.ref.ref >= 1
        assert disk.changed and cpu_dba.changed
        assert (
            await store.record_notification("ops", make_ref_group("HighCPU"), OPS, at(3))
        ).ref.ref == cpu.ref.ref

    async def test_stored_fields_round_trip(self, store: StateStore) -> None:
        group = make_ref_group(firing=("fp-a", "fp-b"), resolved=("fp-c",))
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
        assert dict(ref.alerts[0].labels) == {
            "alertname": "HighCPU",
            "instance": "fp-a",
            "severity": "critical",
        }

    async def test_unknown_ref_is_none(self, store: StateStore) -> None:
        assert await store.get_ref(404) is None
        assert await store.set_ack(404, "zhangsan", at(0)) is None

    async def test_resolved_then_firing_again_keeps_the_number(self, store: StateStore) -> None:
        fired = await store.record_notification("ops", make_ref_group(), OPS, at(0))
        resolved = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(5)
        )
        repeat = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(9)
        )
        again = await store.record_notification("ops", make_ref_group(), OPS, at(60))

        assert fired.ref.ref == resolved.ref.ref == again.ref.ref
        assert not resolved.ref.firing and resolved.ref.resolved_at == at(5)
        assert repeat.ref.resolved_at == at(5), "a repeated resolve must not move the resolve time"
        assert again.ref.firing and again.ref.resolved_at is None
        assert resolved.changed and again.changed

    async def test_first_notification_may_already_be_resolved(self, store: StateStore) -> None:
        update = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(0)
        )
        assert update.changed and not update.suppressed
        assert not update.ref.firing and update.ref.resolved_at == at(0)

    async def test_ack_is_kept_on_an_identical_repeat_which_is_suppressed(self, store: StateStore) -> None:
        ref = (await store.record_notification("ops", make_ref_group(firing=("a", "b")), OPS, at(0))).ref.ref
        acked = await store.set_ack(ref, "zhangsan", at(1))
        assert acked is not None and acked.ack is not None
        assert (acked.ack.user, acked.ack.at) == ("zhangsan", at(1))

        repeat = await store.record_notification("ops", make_ref_group(firing=("b", "a")), OPS, at(5))
        assert repeat.suppressed and not repeat.changed
        assert repeat.ref.ack == acked.ack

        # A resolved alert joining the group changes nothing that still fires.
        with_resolved = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b"), resolved=("c",)), OPS, at(6)
        )
        assert with_resolved.suppressed and not with_resolved.changed

    async def test_a_retried_delivery_keeps_its_first_verdict(self, store: StateStore) -> None:
        ref = (
            await store.record_notification("ops", make_ref_group(firing=("a",)), OPS, at(0), delivery_id=1)
        ).ref.ref
        await store.set_ack(ref, "zhangsan", at(1))
        grew = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b")), OPS, at(5), delivery_id=2
        )
        assert grew.changed and not grew.suppressed
        # Its send failed and is retried: it is still news, not a repeat of itself.
        retried = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b")), OPS, at(5), delivery_id=2
        )
        assert not retried.suppressed and retried.ref.ref == ref
        # Another notification with the same alerts is the repeat that is held back.
        repeat = await store.record_notification(
            "ops", make_ref_group(firing=("a", "b")), OPS, at(9), delivery_id=3
        )
        assert repeat.suppressed

    async def test_ack_holds_when_the_firing_alerts_change_but_the_change_is_sent(
        self,
        store: StateStore,
    ) -> None:
        ref = (await store.record_notification("ops", make_ref_group(firing=("a", "b")), OPS, at(0))).ref.ref
        await store.set_ack(ref, "zhangsan", at(1))

        grew = await store.record_notification("ops", make_ref_group(firing=("a", "b", "c")), OPS, at(5))
        assert grew.changed and not grew.suppressed
        assert grew.ref.ack is not None and grew.ref.ack.user == "zhangsan"

        shrank = await store.record_notification(
            "ops", make_ref_group(firing=("a",), resolved=("b", "c")), OPS, at(7)
        )
        assert shrank.changed and not shrank.suppressed and shrank.ref.ack is not None

    async def test_ack_shows_on_the_resolution_and_is_cleared_when_it_fires_again(
        self,
        store: StateStore,
    ) -> None:
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        await store.set_ack(ref, "zhangsan", at(1))

        resolved = await store.record_notification(
            "ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(5)
        )
        assert resolved.ref.ack is not None and not resolved.suppressed

        refired = await store.record_notification("ops", make_ref_group(), OPS, at(10))
        assert refired.ref.ack is None and not refired.suppressed and refired.changed

    async def test_not_acked_is_never_suppressed(self, store: StateStore) -> None:
        await store.record_notification("ops", make_ref_group(), OPS, at(0))
        repeat = await store.record_notification("ops", make_ref_group(), OPS, at(5))
        assert not repeat.changed and not repeat.suppressed

    async def test_ack_of_a_resolved_ref_does_not_suppress_its_refiring(self, store: StateStore) -> None:
        ref = (await store.record_notification("ops", make_ref_group(), OPS, at(0))).ref.ref
        await store.record_notification("ops", make_ref_group(firing=(), resolved=("fp-a",)), OPS, at(5))
        await store.set_ack(ref, "zhangsan", at(6))
        refired = await store.record_notification("ops", make_ref_group(), OPS, at(10))
        assert refired.changed and not refired.suppressed and refired.ref.ack is None

    async def test_sent_index_orders_by_last_sent_and_filters_firing(self, store: StateStore) -> None:
        cpu = (await store.record_notification("ops", make_ref_group("HighCPU"), OPS, at(0))).ref.ref
        disk = (await store.record_notification("ops", make_ref_group("DiskFull"), OPS, at(0))).ref.ref
        mem = (await store.record_notification("ops", make_ref_group("LowMem"), OPS, at(0))).ref.ref

        await store.record_sent(cpu, ["zhangsan", "lisi", "zhangsan"], at(1))
        await store.record_sent(disk, ["zhangsan"], at(2))
        await store.record_sent(mem, ["lisi"], at(3))
        await store.record_sent(cpu, ["zhangsan"], at(4))  # re-sent: newest again for zhangsan

        latest = await store.latest_ref_for_user("zhangsan")
        assert latest is not None and latest.ref == cpu
        assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [
            cpu,
            disk,
        ]
        assert [r.ref for r in await store.refs_for_user("lisi", firing_only=False, limit=10)] == [mem, cpu]
        assert [r.ref for r in await store.refs_for_user("lisi", firing_only=False, limit=1)] == [mem]

        await store.record_notification(
            "ops", make_ref_group("HighCPU", firing=(), resolved=("fp-a",)), OPS, at(5)
        )
        assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=True, limit=10)] == [disk]
        assert [r.ref for r in await store.refs_for_user("zhangsan", firing_only=False, limit=10)] == [
            cpu,
            disk,
        ]
        latest = await store.latest_ref_for_user("zhangsan")
        assert latest is not None and latest.ref == cpu and not latest.firing

    async def test_sent_index_for_unknown_user_or_ref(self, store: StateStore) -> None:
        assert await store.latest_ref_for_user("nobody") is None
        assert await store.refs_for_user("nobody", firing_only=False, limit=10) == []
        await store.record_sent(404, ["zhangsan"], at(0))  # unknown reference: nothing remembered
        await store.record_sent(404, [], at(0))
        assert await store.latest_ref_for_user("zhangsan") is None

    async def test_claim_callback_once_within_ttl(self, store: StateStore) -> None:
        ttl = timedelta(minutes=5)
        assert await store.claim_callback("msg-1", at(0), ttl)
        assert not await store.claim_callback("msg-1", at(1), ttl)
        assert not await store.claim_callback("msg-1", at(4.9), ttl)
        assert await store.claim_callback("msg-2", at(1), ttl)

    async def test_expired_callback_key_can_be_claimed_again(self, store: StateStore) -> None:
        ttl = timedelta(minutes=5)
        assert await store.claim_callback("msg-1", at(0), ttl)
        assert await store.claim_callback("msg-1", at(5), ttl)  # expiry is exclusive
        assert not await store.claim_callback("msg-1", at(9), ttl), "the re-claim starts a new ttl"
        assert await store.claim_callback("msg-1", at(10), ttl)

    async def test_callback_reply_is_kept_with_its_key(self, store: StateStore) -> None:
        ttl = timedelta(minutes=5)
        assert await store.claim_callback("msg-1", at(0), ttl)
        assert await store.callback_reply("msg-1", at(1)) is None, "claimed, not answered yet"
        await store.save_callback_reply("msg-1", "<xml>回复</xml>")
        await store.save_callback_reply("unknown", "ignored")
        assert await store.callback_reply("msg-1", at(2)) == "<xml>回复</xml>"
        assert await store.callback_reply("unknown", at(2)) is None
        assert await store.callback_reply("msg-1", at(5)) is None, "expired with its key"
        assert await store.claim_callback("msg-1", at(5), ttl)
        assert await store.callback_reply("msg-1", at(6)) is None, "a new claim forgets the old reply"

    async def test_callback_reply_is_seen_from_another_connection(
        self, store: StateStore, make_stores: MakeStores
    ) -> None:
        async with opened(make_stores().state) as other:
            assert await store.claim_callback("msg-1", at(0), timedelta(minutes=5))
            assert not await other.claim_callback("msg-1", at(1), timedelta(minutes=5))
            await store.save_callback_reply("msg-1", "reply")
            assert await other.callback_reply("msg-1", at(1)) == "reply"

    async def test_concurrent_claims_exactly_one_wins(self, store: StateStore) -> None:
        results = await asyncio.gather(
            *(store.claim_callback("dup", at(0), timedelta(minutes=5)) for _ in range(20))
        )
        assert results.count(True) == 1

    async def test_concurrent_claims_on_two_connections_exactly_one_wins(
        self, store: StateStore, make_stores: MakeStores
    ) -> None:
        async with opened(make_stores().state) as other:
            for round_ in range(5):
                key = f"dup-{round_}"
                results = await asyncio.gather(
                    *(
                        (store if i % 2 else other).claim_callback(key, at(0), timedelta(minutes=5))
                        for i in range(20)
                    )
                )
                assert results.count(True) == 1, results
