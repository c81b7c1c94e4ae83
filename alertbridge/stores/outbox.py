"""The outbox protocol: what the webhook handler, the dispatcher and the CLI need from storage.

The outbox holds one row per accepted notification per receiver ("delivery").
The webhook handler commits a ``NewDelivery`` and only then answers 200; the
dispatcher claims due deliveries, renders and sends them, and marks them sent,
rescheduled or dead. SQLite (``alertbridge.stores.sqlite``) is the default; a
store for several replicas implements the same ``OutboxStore`` protocol and
passes ``alertbridge.testing.store_contract``.

Where today's protocol assumes one serving process, the method says so under
"Single process:" together with what a store shared by several replicas must
do instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from alertbridge.message import Recipients, RenderedMessage
from alertbridge.model import AlertGroup


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OneOffMessage:
    """A message stored ready to send, as it is (``alertbridge send``).

    It carries no alerts: the dispatcher sends it alone, never rendered,
    merged into a digest or tied to acks. ``card`` is WeCom's section as
    sent (a textcard's fields, an uploaded file's ``media_id``); without
    one, ``content`` is the section's content (text, markdown). ``what``
    names it in logs and in ``outbox list``.
    """

    msgtype: str
    content: str
    limit: int
    card: Mapping[str, Any] | None = None
    what: str = ""

    def message(self) -> RenderedMessage:
        return RenderedMessage(self.msgtype, self.content, self.limit, card=self.card)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A notification accepted for one receiver, not yet stored."""

    receiver: str
    channel: str
    recipients: Recipients
    group: AlertGroup
    request_id: str
    accepted_at: datetime  # timezone-aware UTC; also the "now" templates render against
    # Identifies the notification regardless of which HA peer sent it; see
    # AlertGroup.notification_key.
    dedup_key: str | None = None
    # Set for a one-off message: what goes out instead of ``group`` (a placeholder).
    oneoff: OneOffMessage | None = None


class Enqueued(int):
    """A delivery id from ``enqueue``, flagged when it is an earlier delivery's
    (the same notification again within the dedup window): an int, so callers
    that only need the id use it as one."""

    duplicate: bool

    def __new__(cls, delivery_id: int, duplicate: bool = False) -> Enqueued:
        value = super().__new__(cls, delivery_id)
        value.duplicate = duplicate
        return value


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stored delivery with its progress."""

    id: int
    receiver: str
    channel: str
    recipients: Recipients
    group: AlertGroup
    request_id: str
    accepted_at: datetime
    status: DeliveryStatus
    attempts: int  # sends tried: failed ones, and the one that sent or dead-lettered it
    parts_sent: int  # messages of a split group already accepted by WeCom
    next_attempt_at: datetime
    last_error: str | None
    finished_at: datetime | None
    digest_id: int | None = None  # set while a stored digest is sending it
    # Failed attempts since WeCom last accepted a part of it (or of its
    # digest): what the retry backoff grows with. ``attempts`` counts them all.
    failures_since_progress: int = 0
    # The part whose send was recorded but not yet answered: after a crash it
    # may have reached WeCom (see OutboxStore.record_attempt); and since when.
    sending_part: int | None = None
    sending_at: datetime | None = None
    oneoff: OneOffMessage | None = None  # as NewDelivery.oneoff

    @property
    def started(self) -> bool:
        """Some part of it may already have reached the messenger. Such a
        delivery finishes as itself: merged into a digest, its alerts would
        show a second time, unmarked."""
        return self.parts_sent > 0 or self.sending_part is not None


@dataclass(frozen=True, slots=True)
class DigestPartRecord:
    """One rendered digest message, kept so a crash re-sends it byte for byte.

    ``finished`` maps each reference whose last alert this part carries to
    the deliveries that are done once it is sent.
    """

    msgtype: str
    content: str
    limit: int
    finished: tuple[tuple[int, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class StoredDigest:
    """A digest being sent: its parts, rendered once, and how many went out."""

    id: int
    receiver: str
    parts: tuple[DigestPartRecord, ...]
    parts_sent: int
    sending_part: int | None = None  # as Delivery.sending_part
    sending_at: datetime | None = None  # as Delivery.sending_at


class DigestClaimStatus(StrEnum):
    """What ``claim_digest`` found."""

    CLAIMED = "claimed"  # its pending deliveries are leased to the caller
    HELD_ELSEWHERE = "held_elsewhere"  # another replica holds a live lease on one of them
    FINISHED = "finished"  # none of its deliveries is pending any more


@dataclass(frozen=True, slots=True)
class DigestClaim:
    """``claim_digest``'s answer: with ``CLAIMED``, the deliveries, oldest first."""

    status: DigestClaimStatus
    members: tuple[Delivery, ...] = ()


class SendLimit(Protocol):
    """At most ``allowed`` sends to ``key`` in any ``window`` (``alertbridge.messengers.RateLimit``)."""

    @property
    def key(self) -> str: ...
    @property
    def window(self) -> timedelta: ...
    @property
    def allowed(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Reservation:
    """Budget slots ``reserve_sends`` took: ``slots`` per key, stored as rows ``ids``."""

    slots: int
    ids: tuple[int, ...]


class OutboxStore(Protocol):
    async def open(self) -> None:
        """Connect; create or migrate the schema."""

    async def release_leases(self) -> int:
        """Free leases left by a crashed run; the serving process calls it at start-up.

        Single process: every lease found at start-up is taken to be a dead
        run's, so all of them are freed. With several replicas, another
        replica's lease is live: the store must free only leases of this
        replica's earlier run (leases carry an owner) or none at all, letting
        ``lease_until`` expire.
        """

    async def close(self) -> None: ...

    async def enqueue(self, delivery: NewDelivery) -> Enqueued:
        """Durably store one delivery and return its id.

        A delivery whose ``dedup_key`` was stored for the same receiver within
        the store's dedup window is not stored again: the earlier id is
        returned, flagged ``duplicate`` (Alertmanager HA peers each send the
        same notification).

        Concurrent calls are committed together (group commit): one
        transaction and one fsync for all callers waiting at that moment.

        Single process: the dedup lookup and the insert run in one
        serialized transaction. With several replicas, two HA peers' copies
        may reach two replicas at once: the check-and-insert must be atomic
        across them (a unique key on receiver and dedup_key within the
        window, or a serializable transaction).

        Raises:
            StoreError: the delivery was not stored; the caller must not
                acknowledge it.
        """

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
        """Pending deliveries due at ``now``, oldest first, leased to the caller.

        A delivery of an open stored digest comes with every pending delivery
        of that digest, due or not, beyond ``limit``: a digest is resumed by
        one claimer as a whole. Split between two replicas, neither could
        resume it, and a group it had half sent would go out again whole.
        """

    async def next_due_at(self) -> datetime | None:
        """When the earliest unleased pending delivery becomes due."""

    async def count_backlog(self, receiver: str, recipients: Recipients) -> int:
        """Pending deliveries of ``receiver`` to exactly ``recipients``, leased or
        not, in a stored digest or not: everything competing for the target's
        budget (another replica's claimed work and an open digest included)."""

    async def claim_backlog(
        self, receiver: str, recipients: Recipients, now: datetime, limit: int, lease: timedelta
    ) -> list[Delivery]:
        """Lease up to ``limit`` of that backlog, due or not, oldest accepted
        first — leaving deliveries a send has ``started`` and one-off messages
        (they go out as themselves)."""

    async def record_progress(self, delivery_id: int, parts_sent: int) -> None:
        """Store how many parts were sent (their sends were counted before:
        ``record_sends`` / ``record_attempt``)."""

    async def mark_sent(self, delivery_id: int, now: datetime) -> None:
        """Finish a delivery (a digest finishes its deliveries with ``digest_progress``)."""

    async def defer(self, delivery_ids: Sequence[int], until: datetime) -> None:
        """Release deliveries until ``until`` without counting an attempt (rate limits)."""

    async def create_digest(
        self, receiver: str, recipients: Recipients, parts: Sequence[DigestPartRecord], now: datetime
    ) -> StoredDigest:
        """Store a digest and tie its deliveries (every id in ``finished``) to it, in one transaction."""

    async def open_digest(self, receiver: str, recipients: Recipients) -> StoredDigest | None:
        """The oldest digest to this target with parts still to send."""

    async def claim_digest(self, digest_id: int, now: datetime, lease: timedelta) -> DigestClaim:
        """Lease every pending delivery of a stored digest (the caller is resuming it).

        Single process: leased or not — a lease on a digest's delivery can
        only be this process's own, and resuming the digest is what it was
        taken for. With several replicas, another replica may be sending the
        digest: the store leases nothing and answers ``HELD_ELSEWHERE`` while
        another replica holds a live lease on one of its deliveries, so two
        replicas never send its parts twice. ``FINISHED``: nothing of it is
        pending (a crash after its last bookkeeping); it may be closed.
        """

    async def lock_target(
        self, receiver: str, recipients: Recipients, now: datetime, lease: timedelta
    ) -> bool:
        """Take the right to compose and send the digests of ``receiver`` to
        ``recipients`` until ``unlock_target`` or ``now + lease``; False while
        another replica holds it. Taking it again while holding it renews it.

        Single process: one worker per target already keeps digests apart,
        so it is always True. With several replicas, two replicas merging one
        member's backlog at once would each compose a digest of half of it:
        the store must let one replica at a time hold a target (a lease that
        a crashed replica's successor of the same name may take over).
        """

    async def unlock_target(self, receiver: str, recipients: Recipients) -> None:
        """Give up ``lock_target``'s hold on the target."""

    async def digest_progress(
        self, digest_id: int, parts_sent: int, finished: Sequence[int], now: datetime
    ) -> None:
        """Record a sent digest part: its count and its finished deliveries."""

    async def recent_sends(
        self, since: datetime, keys: Sequence[str] | None = None
    ) -> list[tuple[str, datetime]]:
        """Budget sends after ``since`` (of ``keys`` only, if given), oldest first.

        The dispatcher reloads them into its in-memory ``SendBudget`` at
        start-up, and a key's after ``reserve_sends`` refused it: the memory
        is this replica's cheap view for scheduling, the store the shared truth.
        """

    async def reserve_sends(
        self,
        limits: Sequence[SendLimit],
        at: datetime,
        slots: int,
        *,
        held_until: datetime,
        part: int | None = None,
        delivery_id: int | None = None,
        digest_id: int | None = None,
    ) -> Reservation | None:
        """Take up to ``slots`` budget slots of every limit's key at ``at``, or none.

        In one atomic step across every process sharing the store: count each
        limit's sends in its window before ``at`` (rows after ``at`` count
        too), take as many slots as all of them allow (at most ``slots``),
        and record them — one row per key and slot, at ``held_until``, the
        latest the messenger may count the send (``settle_sends`` moves them
        to when it did). None, recording nothing, when not one slot fits.
        Two replicas racing for a key's last slot: exactly one gets it.

        With ``part`` (0-based) the same step remembers that part of the
        delivery or digest as on its way since ``at`` (as ``record_attempt``),
        so a crash after it counts the slot and knows the part may have arrived.
        """

    async def settle_sends(self, reservation: Reservation, sent_at: datetime) -> None:
        """The messenger answered at ``sent_at``: the reserved slots count from then."""

    async def refund_sends(self, reservation: Reservation) -> None:
        """The send failed: give the reserved slots back."""

    async def record_sends(self, budget_keys: Sequence[str], at: datetime) -> None:
        """Count a send against each budget key, unconditionally (``outbox`` tooling and
        tests; the delivery core reserves with ``reserve_sends``, which checks the limits)."""

    async def record_attempt(
        self,
        budget_keys: Sequence[str],
        at: datetime,
        *,
        part: int | None,
        delivery_id: int | None = None,
        digest_id: int | None = None,
    ) -> None:
        """Before sending part ``part`` (0-based) of a delivery or digest: count
        the send against each budget key and remember the part is on its way
        since ``at`` (cleared when WeCom's answer is recorded; ``part=None`` clears it:
        the delivery core does that when WeCom answered the part did not arrive,
        having counted and marked it with ``reserve_sends``)."""

    async def forget_sends(self, before: datetime) -> int: ...

    async def reschedule(self, delivery_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed attempt and release the lease until ``next_attempt_at``."""

    async def mark_dead(self, delivery_id: int, reason: str, now: datetime) -> None: ...

    async def list(self, status: DeliveryStatus | None = None, limit: int = 100) -> list[Delivery]:
        """Newest first."""

    async def get(self, delivery_id: int) -> Delivery | None:
        """One delivery by id (``outbox retry`` says what became of it)."""

    async def retry(self, delivery_id: int, now: datetime) -> bool:
        """Make a dead (or pending) delivery due now with zero attempts; False if unknown."""

    async def count(self, status: DeliveryStatus) -> int: ...

    async def oldest_pending(self) -> datetime | None:
        """When the oldest pending delivery was accepted (for /metrics)."""

    async def probe(self, now: datetime) -> None:
        """Commit a tiny write; raises ``StoreError`` if the store cannot take writes (for /readyz)."""

    async def delete_finished(self, older_than: datetime) -> int:
        """Prune sent deliveries finished before ``older_than``; dead letters stay."""
