"""Messengers' send limits, kept on our side so nothing is silently dropped.

WeCom, for one, drops (answering ok!) an app's messages to a member beyond
30 a minute. The dispatcher therefore asks a ``SendBudget`` before every send
and, when the budget cannot cover what is waiting, merges it into digests
instead. Which limits a message counts against is the messenger's business
(``Messenger.limits_for``; WeCom's live in its messenger package).

Windows slide: at most ``allowed`` sends in *any* ``window``. That is never
more than a fixed calendar-minute counter would allow, so it is safe whichever
way WeCom counts. A budget is keyed by what the messenger counts against
(a WeCom app's member, a robot key …), so receivers that share one share its budget.

The dispatcher reserves before sending, so two deliveries to the same member
can never both take its last slot; it refunds a send that failed and, for one
that succeeded, moves the slot to when WeCom answered — WeCom counts the send
when it arrives, which may be a little after we asked, and the next send must
be a full window after *that*.

The in-memory ``SendBudget`` is this process's view; the outbox store has
the last word (``SharedBudget``): every reservation is also taken in the
store, atomically across every replica sharing it, so replicas in a storm
never push a member past WeCom's limits together. The memory answers
``available``/``next_free`` for scheduling without a round trip; it is
reloaded from the store at start-up (a restart in the middle of a storm must
not think the last minute's sends never happened) and, for a key, whenever
the store refused a reservation the memory allowed (another replica sent).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from alertbridge.errors import StoreError
from alertbridge.messengers import DAY, RateLimit
from alertbridge.stores import OutboxStore, Reservation

log = logging.getLogger(__name__)

# The longest window any limit uses (appchat's 10,000 a day per member):
# older sends are forgotten. Counting walks back only over a limit's own
# window, so keeping a day costs memory and store rows, not time per send.
LONGEST_WINDOW = DAY


class SendBudget:
    """Sliding-window send counts per key; in memory, seeded from the store.

    Each key's sends are kept sorted, so counting a window is a binary
    search, even over a day of a busy group chat's sends.
    """

    def __init__(self) -> None:
        self._sends: dict[str, list[datetime]] = {}

    def load(self, sends: Iterable[tuple[str, datetime]]) -> None:
        """Seed with earlier sends (key, when), e.g. from before a restart."""
        for key, at in sends:
            bisect.insort(self._sends.setdefault(key, []), at)

    def replace(self, keys: Iterable[str], sends: Iterable[tuple[str, datetime]]) -> None:
        """Take the store's record of ``keys`` (``sends``: key, when) as this budget's."""
        for key in keys:
            self._sends.pop(key, None)
        self.load(sends)

    def available(self, limits: Sequence[RateLimit], now: datetime) -> int:
        """How many messages can go to all of ``limits``' keys now.

        Unlimited (no limits, e.g. the console) is reported as a large number.
        """
        if not limits:
            return 1_000_000
        return max(0, min(limit.allowed - self._used(limit, now) for limit in limits))

    def next_free(self, limits: Sequence[RateLimit], now: datetime) -> datetime:
        """The earliest time at which one more message fits every limit."""
        free = now
        for limit in limits:
            recent = self._recent(limit.key, now - limit.window)
            if len(recent) >= limit.allowed:
                # The send that must age out for a slot to open.
                free = max(free, recent[len(recent) - limit.allowed] + limit.window)
        return free

    def reserve(self, limits: Sequence[RateLimit], now: datetime) -> bool:
        """Take one slot of every key, or none if any is exhausted."""
        if self.available(limits, now) < 1:
            return False
        for key in {limit.key for limit in limits}:
            bisect.insort(self._sends.setdefault(key, []), now)
        return True

    def reserve_message(self, limits: Sequence[RateLimit], now: datetime, images: int) -> int | None:
        """Slots for one message and its ``images`` (WeCom counts each image as
        a message too), images only while there is room: how many were taken,
        None when not even the message fits. Unlimited targets take them all."""
        if not limits:
            return 1 + images
        if not self.reserve(limits, now):
            return None
        slots = 1
        for _ in range(images):
            if not self.reserve(limits, now):
                break
            slots += 1
        return slots

    def refund(self, limits: Sequence[RateLimit], at: datetime, slots: int = 1) -> None:
        """Give back ``slots`` that ``reserve`` took at ``at`` for a send WeCom refused."""
        for _ in range(slots):
            for key in {limit.key for limit in limits}:
                sends = self._sends.get(key)
                if sends is not None and at in sends:
                    sends.remove(at)

    def settle(
        self, limits: Sequence[RateLimit], reserved_at: datetime, sent_at: datetime, slots: int = 1
    ) -> None:
        """Move ``slots`` reserved at ``reserved_at`` to ``sent_at`` (when WeCom answered)."""
        for _ in range(slots):
            for key in {limit.key for limit in limits}:
                sends = self._sends.get(key)
                if sends is None or reserved_at not in sends:
                    continue
                sends.remove(reserved_at)
                bisect.insort(sends, sent_at)

    def forget_before(self, cutoff: datetime) -> None:
        """Drop sends older than every window (memory stays bounded)."""
        for key in list(self._sends):
            sends = self._sends[key]
            del sends[: bisect.bisect_left(sends, cutoff)]
            if not sends:
                del self._sends[key]

    def _used(self, limit: RateLimit, now: datetime) -> int:
        sends = self._sends.get(limit.key, [])
        return len(sends) - bisect.bisect_right(sends, now - limit.window)

    def _recent(self, key: str, since: datetime) -> list[datetime]:
        """This key's sends after ``since``, oldest first."""
        sends = self._sends.get(key, [])
        return sends[bisect.bisect_right(sends, since) :]


class SharedBudget:
    """What every send reserves through: the memory first, then the store.

    The memory turns away, without a round trip, what this process already
    knows does not fit; the store decides, atomically across the replicas
    sharing it. A send (an alert's part, a digest's, a command reply) is
    counted in the store before it is made — a send cut off by a crash may
    still have reached WeCom, and nobody must think its slot was free.
    """

    def __init__(self, memory: SendBudget, store: OutboxStore) -> None:
        self.memory = memory
        self._store = store

    async def reserve(
        self,
        limits: Sequence[RateLimit],
        at: datetime,
        images: int,
        *,
        send_timeout: timedelta,
        part: int | None = None,
        delivery_id: int | None = None,
        digest_id: int | None = None,
    ) -> Reservation | None:
        """Slots for one message and as many of its ``images`` as fit (see
        ``SendBudget.reserve_message``); with ``part``, the part is recorded
        as on its way in the same step. None when not even the message fits.

        Raises:
            StoreError: nothing is known to be reserved in the store; the
                memory keeps the slots (it may have been, and erring
                towards fewer sends is safe).
        """
        slots = self.memory.reserve_message(limits, at, images)
        if slots is None:
            return None
        if not limits and part is None:
            return Reservation(slots=slots, ids=())  # unlimited, and nothing to remember
        # Rows are held at the latest time the messenger may count the send
        # until its answer says when it did: a crash leaves them there.
        reservation = await self._store.reserve_sends(
            limits,
            at,
            slots,
            held_until=at + send_timeout,
            part=part,
            delivery_id=delivery_id,
            digest_id=digest_id,
        )
        if reservation is None:
            self.memory.refund(limits, at, slots)
            # Another replica took the slots: learn its sends, so next_free
            # says when to try again instead of "now".
            keys = sorted({limit.key for limit in limits})
            self.memory.replace(keys, await self._store.recent_sends(at - LONGEST_WINDOW, keys))
            return None
        if reservation.slots < slots:
            self.memory.refund(limits, at, slots - reservation.slots)
        return reservation

    async def settle(
        self, limits: Sequence[RateLimit], reservation: Reservation, at: datetime, sent_at: datetime
    ) -> None:
        """The messenger answered at ``sent_at``: the slots reserved at ``at`` count from then.

        The store being down leaves them held at the latest time the
        messenger may have counted the send: too late, never too early.
        """
        self.memory.settle(limits, at, sent_at, reservation.slots)
        try:
            await self._store.settle_sends(reservation, sent_at)
        except StoreError as exc:
            log.error("rate_budget_settle_failed error=%s", exc)

    async def refund(self, limits: Sequence[RateLimit], reservation: Reservation, at: datetime) -> None:
        """The send failed: give back the slots reserved at ``at`` (in the
        store, they stay spent while it is down: fewer sends, never more)."""
        self.memory.refund(limits, at, reservation.slots)
        try:
            await self._store.refund_sends(reservation)
        except StoreError as exc:
            log.error("rate_budget_refund_failed error=%s", exc)
