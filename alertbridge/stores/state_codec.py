"""How the state store's rows become ``AlertRef``, ``SilenceRecord``, ``CardRecord``,
``AuditEntry``, ``SentMessage`` and ``Resolution``.

Shared by every backend, with the encodings of ``alertbridge.stores.codec``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final, TypeVar

from alertbridge.errors import StoreError
from alertbridge.message import Recipients
from alertbridge.model import AlertGroup, Status
from alertbridge.stores.codec import DECODE_ERRORS, Row, Undecodable, dumps, from_us, loads, to_us
from alertbridge.stores.state import (
    Ack,
    AlertRef,
    Attachment,
    AuditEntry,
    CardRecord,
    RefAlert,
    Resolution,
    ResolutionState,
    SentMessage,
    SilenceRecord,
)

_T = TypeVar("_T")

TITLE_MAX: Final = 80


_REF_FIELDS: Final = (
    "ref",
    "receiver",
    "source",
    "group_key",
    "external_url",
    "title",
    "alerts",
    "recipients",
    "firing",
    "created_at",
    "updated_at",
    "resolved_at",
    "ack_user",
    "ack_at",
    "cluster",
)
REF_COLUMNS: Final = ", ".join(_REF_FIELDS)
R_REF_COLUMNS: Final = ", ".join(f"r.{name}" for name in _REF_FIELDS)

SILENCE_COLUMNS: Final = (
    "silence_id, silencer, ref, created_by, ends_at, matchers, created_at, via_ack, expired_at"
)
CARD_COLUMNS: Final = "task_id, ref, app, users, response_code, response_code_at"
AUDIT_COLUMNS: Final = "id, at, user_id, action, ref, result, detail, silence_id"
# What an INSERT writes (the id is the database's): with ``audit_values``.
AUDIT_INSERT_COLUMNS: Final = "at, user_id, action, ref, result, detail, silence_id"
ATTACHMENT_COLUMNS: Final = "audit_id, kind, filename, content_type, media_id, data"
SENT_MESSAGE_COLUMNS: Final = "msgid, ref, app, sent_at"
RESOLUTION_COLUMNS: Final = "delivery_id, ref, receiver, requested_at, state, decided_at"


def ref_title(group: AlertGroup) -> str:
    """A short name for replies (``#27 HighCPU``).

    The common ``alertname`` says what fires; without one (a group mixing
    alerts) the group labels say what the group is; the group key is the
    last resort because it is long and unreadable.
    """
    title = group.common_labels.get("alertname", "")
    if not title:
        names = {alert.labels.get("alertname", "") for alert in group.alerts}
        if len(names) == 1:
            title = names.pop()
    if not title and group.group_labels:
        title = ", ".join(f"{key}={value}" for key, value in sorted(group.group_labels.items()))
    if not title:
        title = group.group_key
    if len(title) > TITLE_MAX:
        title = title[: TITLE_MAX - 1] + "…"
    return title


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(mapping.items())))


def us_or_none(value: datetime | None) -> int | None:
    return to_us(value) if value is not None else None


def _dt_or_none(value: int | None) -> datetime | None:
    return from_us(value) if value is not None else None


def alerts_json(group: AlertGroup) -> str:
    return dumps(
        [
            {
                "fingerprint": alert.fingerprint,
                "labels": dict(alert.labels),
                "firing": alert.status is Status.FIRING,
            }
            for alert in group.alerts
        ]
    )


def decode_alerts(text: str) -> tuple[RefAlert, ...]:
    return tuple(
        RefAlert(
            fingerprint=str(item["fingerprint"]),
            labels=_frozen({str(k): str(v) for k, v in item["labels"].items()}),
            firing=bool(item["firing"]),
        )
        for item in loads(text)
    )


def to_ref(row: Row) -> AlertRef:
    """Decode one row selected with ``REF_COLUMNS``."""
    try:
        ack = Ack(user=row[12], at=from_us(row[13])) if row[12] is not None else None
        return AlertRef(
            ref=row[0],
            receiver=row[1],
            source=row[2],
            group_key=row[3],
            external_url=row[4],
            title=row[5],
            alerts=decode_alerts(row[6]),
            recipients=Recipients.from_dict(loads(row[7])),
            firing=bool(row[8]),
            created_at=from_us(row[9]),
            updated_at=from_us(row[10]),
            resolved_at=_dt_or_none(row[11]),
            ack=ack,
            cluster=row[14],
        )
    except DECODE_ERRORS as exc:
        raise Undecodable(f"reference #{row[0]}", exc) from exc


def to_silence(row: Row) -> SilenceRecord:
    return SilenceRecord(
        silence_id=row[0],
        silencer=row[1],
        ref=row[2],
        created_by=row[3],
        ends_at=from_us(row[4]),
        matchers=row[5],
        created_at=from_us(row[6]),
        via_ack=bool(row[7]),
        expired_at=_dt_or_none(row[8]),
    )


def to_card(row: Row) -> CardRecord:
    try:
        users = tuple(str(u) for u in loads(row[3]))
    except DECODE_ERRORS as exc:
        raise Undecodable(f"card {row[0]}", exc) from exc
    return CardRecord(
        task_id=row[0],
        ref=row[1],
        app=row[2],
        users=users,
        response_code=row[4],
        response_code_at=_dt_or_none(row[5]),
    )


def to_sent_message(row: Row) -> SentMessage:
    """Decode one row selected with ``SENT_MESSAGE_COLUMNS``."""
    return SentMessage(msgid=row[0], ref=row[1], app=row[2], sent_at=from_us(row[3]))


def to_audit(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row[0],
        at=from_us(row[1]),
        user=row[2],
        action=row[3],
        ref=row[4],
        result=row[5],
        detail=row[6],
        silence_id=row[7],
    )


def audit_values(entry: AuditEntry) -> tuple[object, ...]:
    """``entry`` as the values of ``AUDIT_INSERT_COLUMNS``."""
    return (
        to_us(entry.at),
        entry.user,
        entry.action,
        entry.ref,
        entry.result,
        entry.detail,
        entry.silence_id,
    )


def attachment_values(audit_id: int, attachment: Attachment) -> tuple[object, ...]:
    """``attachment`` as the values of ``ATTACHMENT_COLUMNS``, beside audit row ``audit_id``."""
    a = attachment
    return (audit_id, a.kind, a.filename, a.content_type, a.media_id, a.data)


def to_attachment(row: Row) -> Attachment:
    """Decode one row selected with ``ATTACHMENT_COLUMNS``."""
    return Attachment(row[1], row[2], row[3], row[4], bytes(row[5]), audit_id=row[0])


def to_resolution(row: Row) -> Resolution:
    """Decode one row selected with ``RESOLUTION_COLUMNS``."""
    try:
        state = ResolutionState(row[4])
    except ValueError as exc:
        raise Undecodable(f"resolution of delivery {row[0]}", exc) from exc
    return Resolution(
        delivery_id=row[0],
        ref=row[1],
        receiver=row[2],
        requested_at=from_us(row[3]),
        state=state,
        decided_at=_dt_or_none(row[5]),
    )


def decode_one(row: Row | None, decode: Callable[[Row], _T]) -> _T | None:
    """Decode a single row asked for by key; an unreadable one is a StoreError."""
    if row is None:
        return None
    try:
        return decode(row)
    except Undecodable as exc:
        raise StoreError(str(exc)) from exc
