"""What alertbridge remembers besides the outbox: alert references, acks,
silences it created, callback dedup, cards, and the audit trail.

A reference (``#27``) names one alert group as one receiver saw it from one
sender (source and cluster, see ``alertbridge.senders``): the group key, its alerts (fingerprints and full label sets) and who
it was sent to. It stays the same across re-notifications of the group and
stays valid until the group resolves plus ``commands.reference_retention``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from alertbridge.message import Recipients
from alertbridge.model import Ack, AlertGroup

__all__ = [
    "Ack",
    "AlertRef",
    "AuditEntry",
    "CardRecord",
    "RefAlert",
    "RefUpdate",
    "Resolution",
    "ResolutionState",
    "SentMessage",
    "SilenceRecord",
    "StateStore",
]


@dataclass(frozen=True, slots=True)
class RefAlert:
    fingerprint: str
    labels: Mapping[str, str]
    firing: bool


@dataclass(frozen=True, slots=True)
class AlertRef:
    ref: int
    receiver: str
    source: str
    group_key: str
    external_url: str
    title: str  # a short name for replies: the group's alertname, or its group labels
    alerts: tuple[RefAlert, ...]  # the alerts of the latest notification
    recipients: Recipients
    firing: bool
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    ack: Ack | None  # cleared when the group fires again after resolving
    cluster: str = ""  # the sender within the source (alertbridge.senders.cluster_of)


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """The result of recording a notification against its reference."""

    ref: AlertRef
    changed: bool  # the set of firing fingerprints differs from the previous notification
    suppressed: bool  # acknowledged and unchanged: do not notify again


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    silence_id: str
    silencer: str
    ref: int | None
    created_by: str
    ends_at: datetime
    matchers: str  # human-readable, e.g. alertname="X", instance=~"a|b"
    created_at: datetime
    via_ack: bool = False  # created by `ack` with ack_silences: extended until resolved
    expired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    user: str
    action: str  # ack | silence | unsilence | alerts | silences | help | button:<action>
    ref: int | None
    result: str  # ok | refused | failed | invalid
    detail: str = ""
    silence_id: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a member sent to an app (an image, voice, video or file message),
    kept beside the audit row that records it (``audit_id``), so a screenshot
    replied to an alert stays with who sent it and which reference it concerns."""

    kind: str  # image | voice | video | file (the inbound MsgType)
    filename: str
    content_type: str
    media_id: str  # WeCom's id, valid 3 days: the bytes are kept here instead
    data: bytes
    audit_id: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class CardRecord:
    """A template card sent for a reference; its response_code is usable once."""

    task_id: str
    ref: int
    app: str
    users: tuple[str, ...]
    response_code: str | None
    response_code_at: datetime | None


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message sent for a reference under a msgid, kept so that its group's
    resolution can recall it (``on_resolve = "recall"``); taken once."""

    msgid: str
    ref: int
    app: str  # the [wecom.apps] name that sent it (recall needs its token)
    sent_at: datetime


class ResolutionState(StrEnum):
    """Where the update of a resolved group's messages (cards turned "Resolved") stands."""

    PENDING = "pending"  # the upkeep has yet to do it: the resolved delivery waits
    DONE = "done"  # every message now says resolved: no resolved message is sent
    # At least one could not be updated (or it took too long), or the messages
    # were recalled (on_resolve = "recall"): send one.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The resolution work of one resolved delivery.

    The send path only records it; the upkeep task does it (HTTP calls to the
    messenger) and records the outcome, which the delivery reads when it is
    claimed again. Kept in the store so a restart in between loses neither.
    """

    delivery_id: int
    ref: int
    receiver: str  # the receiver's name, whose messenger does the work
    requested_at: datetime
    state: ResolutionState = ResolutionState.PENDING
    decided_at: datetime | None = None


class StateStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def record_notification(
        self,
        receiver: str,
        group: AlertGroup,
        recipients: Recipients,
        now: datetime,
        *,
        delivery_id: int | None = None,
        cluster: str = "",
    ) -> RefUpdate:
        """Upsert the reference of (receiver, source, cluster, group_key) with
        this notification's alerts.

        Two senders' groups with the same key (an Alertmanager's and a
        Grafana's ``{}:{}``) are two references, each with its own ack.

        Recording the same ``delivery_id`` again (a retry) returns the verdict
        it got the first time and changes nothing.

        The same group keeps its number while it fires; a group that resolved
        and fires again later keeps it too (same key). An ack holds for one
        firing episode, its resolution included, and is cleared when the
        group fires again after resolving; ``suppressed`` marks an unchanged
        repeat of an acknowledged, firing group.
        """

    async def get_ref(self, ref: int) -> AlertRef | None: ...

    async def record_sent(self, ref: int, users: Sequence[str], now: datetime) -> None:
        """Remember that these users were sent this reference (for `ack` and `alerts`)."""

    async def latest_ref_for_user(self, user: str) -> AlertRef | None: ...

    async def refs_for_user(self, user: str, *, firing_only: bool, limit: int) -> list[AlertRef]:
        """Newest first."""

    async def set_ack(self, ref: int, user: str, now: datetime) -> AlertRef | None: ...

    async def claim_callback(self, key: str, now: datetime, ttl: timedelta) -> bool:
        """True the first time ``key`` is seen within ``ttl``: WeCom re-sends
        callbacks it got no answer for, and each must act once. Taking over an
        expired key forgets its reply."""

    async def save_callback_reply(self, key: str, reply: str) -> None:
        """Remember the passive reply a claimed ``key`` was answered with, so
        WeCom's retry of it gets the same answer on any replica. An unknown key
        is a no-op."""

    async def callback_reply(self, key: str, now: datetime) -> str | None:
        """The reply saved for ``key`` while it is live at ``now``, else None."""

    async def add_silence(self, record: SilenceRecord) -> None: ...

    async def replace_silence_id(self, old_id: str, new_id: str, ends_at: datetime) -> None: ...

    async def mark_silence_expired(self, silence_id: str, now: datetime) -> None: ...

    async def get_silence(self, silence_id: str) -> SilenceRecord | None: ...

    async def silences_for_ref(self, ref: int, *, active_at: datetime) -> list[SilenceRecord]: ...

    async def active_silences(self, now: datetime) -> list[SilenceRecord]: ...

    async def add_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(self, limit: int) -> list[AuditEntry]:
        """Newest first."""

    async def latest_audit_ref(self, user: str) -> int | None:
        """The reference named by ``user``'s most recent audited action that named one."""

    async def add_attachment(self, entry: AuditEntry, attachment: Attachment) -> int:
        """Append ``entry`` and keep ``attachment`` beside it, in one transaction;
        the new audit row's id (``attachment.audit_id`` is ignored)."""

    async def get_attachment(self, audit_id: int) -> Attachment | None: ...

    async def save_card(self, card: CardRecord) -> None: ...

    async def cards_for_ref(self, ref: int) -> list[CardRecord]: ...

    async def get_card(self, task_id: str) -> CardRecord | None: ...

    async def use_response_code(self, task_id: str) -> str | None:
        """Take the card's response_code (it is valid once) and clear it."""

    async def save_sent_message(self, message: SentMessage) -> None:
        """Store (or put back) ``message``; skipped if its reference is gone."""

    async def sent_messages_for_ref(self, ref: int) -> list[SentMessage]:
        """The messages of ``ref`` not yet taken, oldest first."""

    async def take_sent_message(self, msgid: str) -> bool:
        """Take ``msgid`` to recall it: True for the one caller (on any
        replica) that took it; it is forgotten, so a recall is never repeated."""

    async def request_resolution(
        self, delivery_id: int, ref: int, receiver: str, now: datetime
    ) -> Resolution:
        """Record the resolution work of ``delivery_id`` as pending; asked again
        for the same delivery, change nothing and return what is stored."""

    async def get_resolution(self, delivery_id: int) -> Resolution | None: ...

    async def claim_resolutions(self, now: datetime, lease: timedelta, limit: int) -> list[Resolution]:
        """Up to ``limit`` pending resolutions nobody holds, oldest first, held
        by the caller for ``lease`` (another replica's upkeep skips them)."""

    async def decide_resolution(
        self, delivery_id: int, state: ResolutionState, now: datetime
    ) -> Resolution | None:
        """Record the outcome of a pending resolution; the first decision counts
        (a later one changes nothing). Returns the resolution as stored, None
        when there is none."""

    async def prune(self, now: datetime, retention: timedelta) -> int:
        """Forget references resolved longer than ``retention`` ago, old
        dedup keys, cards, sent messages and resolutions of gone references, resolutions
        decided longer than ``retention`` ago; audit rows are kept."""
