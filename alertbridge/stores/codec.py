"""How stored rows and values become alertbridge's dataclasses, for every backend.

The SQLite and PostgreSQL stores keep the same columns with the same
encodings, so one set of codecs serves both:

* timestamps are integer microseconds since the Unix epoch (UTC): exact
  round trips of Python's µs datetimes, cheap comparisons, index-friendly,
  and no time zone conversion in the database or the driver;
* structured values (recipients, alert groups, digest parts) are compact JSON
  text, compared as text where a query needs equality (a backlog's recipients).

``COLUMNS`` is the delivery column list ``to_delivery`` decodes; the state
store's lists and decoders are in ``alertbridge.stores.state_codec``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, TypeVar

import orjson

from alertbridge.message import Recipients
from alertbridge.model import AlertGroup
from alertbridge.stores.outbox import Delivery, DeliveryStatus, DigestPartRecord, OneOffMessage

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class Row(Protocol):
    """A stored row as either driver returns it (``sqlite3.Row``, ``asyncpg.Record``):
    values by position, in the order of the column list it was selected with."""

    def __getitem__(self, index: int, /) -> Any: ...


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    """Aware datetime → integer µs since the epoch; naive times are a bug."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware times")
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def dumps(data: Any) -> str:
    """Compact JSON, readable in a database shell (CJK stays CJK).

    orjson writes every accepted webhook's group several times faster than
    ``json`` (Phase 10), and the same text for what the stores keep (str
    keys, str/int/bool/None values, lists), so values compared as text in
    queries (a backlog's recipients) match rows written before. ``json``
    takes what orjson refuses: integers beyond 64 bits, and lone surrogates,
    which ``enqueue`` then refuses as unstorable.
    """
    try:
        return orjson.dumps(data).decode("utf-8")
    except TypeError:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """A stored JSON value (``orjson.JSONDecodeError`` is a ``ValueError``, a ``DECODE_ERRORS``)."""
    return orjson.loads(text)


# What a stored value this version cannot read raises while being decoded.
DECODE_ERRORS: Final = (ValueError, KeyError, TypeError, AttributeError)


class Undecodable(Exception):
    """A stored row this version cannot turn back into its dataclass."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what} is unreadable: {type(cause).__name__}: {cause}")


def decode_rows(rows: Iterable[Row], decode: Callable[[Row], _T], op: str) -> list[_T]:
    """Decode rows, leaving out (and logging) any this version cannot read,
    so one bad row never hides every other from a listing."""
    decoded: list[_T] = []
    for row in rows:
        try:
            decoded.append(decode(row))
        except Undecodable as exc:
            logger.error("%s: %s", op, exc)
    return decoded


# -- deliveries and digests ---------------------------------------------------

COLUMNS: Final = (
    "id, receiver, channel, recipients, alert_group, request_id, accepted_at, status,"
    " attempts, parts_sent, next_attempt_at, last_error, finished_at, digest_id, failures_since_progress,"
    " sending_part, sending_at, oneoff"
)


def to_delivery(row: Row) -> Delivery:
    """Decode one row selected with ``COLUMNS``."""
    try:
        return Delivery(
            id=row[0],
            receiver=row[1],
            channel=row[2],
            recipients=Recipients.from_dict(loads(row[3])),
            group=AlertGroup.from_dict(loads(row[4])),
            request_id=row[5],
            accepted_at=from_us(row[6]),
            status=DeliveryStatus(row[7]),
            attempts=row[8],
            parts_sent=row[9],
            next_attempt_at=from_us(row[10]),
            last_error=row[11],
            finished_at=from_us(row[12]) if row[12] is not None else None,
            digest_id=row[13],
            failures_since_progress=row[14],
            sending_part=row[15],
            sending_at=from_us(row[16]) if row[16] is not None else None,
            oneoff=oneoff_from_json(loads(row[17])) if row[17] is not None else None,
        )
    except DECODE_ERRORS as exc:
        raise Undecodable(f"delivery {row[0]}", exc) from exc


def part_to_json(part: DigestPartRecord) -> dict[str, Any]:
    return {
        "msgtype": part.msgtype,
        "content": part.content,
        "limit": part.limit,
        "finished": [[ref, list(ids)] for ref, ids in part.finished],
    }


def part_from_json(data: dict[str, Any]) -> DigestPartRecord:
    return DigestPartRecord(
        msgtype=str(data["msgtype"]),
        content=str(data["content"]),
        limit=int(data["limit"]),
        finished=tuple((int(ref), tuple(int(i) for i in ids)) for ref, ids in data["finished"]),
    )


def oneoff_to_text(message: OneOffMessage | None) -> str | None:
    """The ``oneoff`` column: JSON, or NULL for an alert group's delivery."""
    if message is None:
        return None
    data: dict[str, Any] = {"msgtype": message.msgtype, "content": message.content, "limit": message.limit}
    if message.card is not None:
        data["card"] = dict(message.card)
    if message.what:
        data["what"] = message.what
    return dumps(data)


def oneoff_from_json(data: dict[str, Any]) -> OneOffMessage:
    card = data.get("card")
    return OneOffMessage(
        msgtype=str(data["msgtype"]),
        content=str(data["content"]),
        limit=int(data["limit"]),
        card=dict(card) if card is not None else None,
        what=str(data.get("what", "")),
    )
