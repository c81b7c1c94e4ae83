"""``alertbridge migrate``, ``outbox`` and ``audit``: create the store's tables,
list and retry deliveries, and read the audit log and the files members sent."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from alertbridge.config import Config
from alertbridge.config_command import config_command, load_from_args
from alertbridge.delivery import SendBudget
from alertbridge.messengers.wecom.limits import limits_for
from alertbridge.stores import Delivery, DeliveryStatus, OutboxStore, stores_for


def add_store_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``migrate``, ``outbox list|retry`` and ``audit list|attachment`` to the CLI's commands."""
    config_command(
        commands, "migrate", _migrate, "create or upgrade the store's tables, then exit (serve does it too)"
    )
    outbox = commands.add_parser("outbox", help="inspect and retry deliveries")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    listing = outbox_commands.add_parser("list", help="list deliveries, newest first")
    listing.add_argument("-c", "--config", required=True, type=Path)
    listing.add_argument("--dead", action="store_true", help="only dead letters")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_outbox_list)
    retry = outbox_commands.add_parser("retry", help="make a dead delivery due again")
    retry.add_argument("-c", "--config", required=True, type=Path)
    retry.add_argument("id", type=int)
    retry.set_defaults(run=_outbox_retry)

    audit = commands.add_parser("audit", help="who acked or silenced what")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    audit_list = audit_commands.add_parser("list", help="audit entries, newest first")
    audit_list.add_argument("-c", "--config", required=True, type=Path)
    audit_list.add_argument("--limit", type=int, default=50)
    audit_list.add_argument("--ids", action="store_true", help="show each entry's id")
    audit_list.set_defaults(run=_audit_list)
    attachment = audit_commands.add_parser(
        "attachment", help="write out the file a member sent (an audit entry with action attach:*)"
    )
    attachment.add_argument("-c", "--config", required=True, type=Path)
    attachment.add_argument("id", type=int, help="the audit entry's id (`audit list --ids`)")
    attachment.add_argument(
        "-o", "--output", type=Path, help="where to write it (default: its own name, here)"
    )
    attachment.set_defaults(run=_audit_attachment)


class _Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


_S = TypeVar("_S", bound=_Store)
_T = TypeVar("_T")


def _using(store: _S, work: Callable[[_S], Awaitable[_T]]) -> _T:
    """Open ``store``, run one query, close it: what each inspection command does."""

    async def run() -> _T:
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _outbox_list(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    status = DeliveryStatus.DEAD if args.dead else None
    now = datetime.now(UTC)

    async def query(store: OutboxStore) -> tuple[list[Delivery], list[tuple[str, datetime]]]:
        # Sends within the longest rate-limit window say which limit holds a row back.
        return await store.list(status, args.limit), await store.recent_sends(now - timedelta(hours=1))

    rows, sends = _using(stores_for(config).outbox, query)
    budget = SendBudget()
    budget.load(sends)
    header = f"{'ID':>6}  {'STATUS':7}  {'RECEIVER':16}  {'ATTEMPTS':>8}  {'ACCEPTED (UTC)':19}"
    print(f"{header}  ALERTS  NOTE (times UTC)")
    for d in rows:
        print(
            f"{d.id:>6}  {d.status.value:7}  {d.receiver[:16]:16}  {d.attempts:>8}  "
            f"{d.accepted_at:%Y-%m-%d %H:%M:%S}  {len(d.group.alerts):>6}  {_outbox_note(config, d, budget, now)}"
        )
    if not rows:
        print("(none)")
    return 0


def _outbox_note(config: Config, d: Delivery, budget: SendBudget, now: datetime) -> str:
    """What an operator needs about one row: why it waits, or why it died.

    A sent row's last error is history (a retry got through): not shown.
    """
    if d.status is DeliveryStatus.SENT:
        return ""
    if d.status is DeliveryStatus.DEAD or d.next_attempt_at <= now:
        return d.last_error or ""
    receiver = config.receivers.get(d.receiver)
    full = [
        limit
        for limit in (
            limits_for(config.wecom, config.receivers.values(), receiver, d.recipients)
            if receiver is not None
            else ()
        )
        if budget.available((limit,), now) < 1
    ]
    until = f"{d.next_attempt_at:%H:%M:%S}"
    # The dispatcher defers a row to when its budget frees; a row due later
    # than that waits for a retry's backoff, whatever the budget says.
    if full and d.next_attempt_at <= budget.next_free(full, now) + timedelta(seconds=1):
        # "app:<corp>:<agent>:user:zhangsan" -> "zhangsan"; a robot's key is a hash.
        who = ", ".join(dict.fromkeys(_limit_target(limit.key) for limit in full))
        return f"held until {until} (rate limit {who})"
    return f"retry at {until}: {d.last_error}" if d.last_error else f"due at {until}"


def _limit_target(key: str) -> str:
    """Who a budget key limits, for people: ``zhangsan``, ``party 2``, ``robot``."""
    if key.startswith("robot:"):
        return "robot"
    kind, target = key.split(":")[-2:]
    return target if kind == "user" else f"{kind} {target}"


def _outbox_retry(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    now = datetime.now(UTC)

    async def retry(store: OutboxStore) -> tuple[bool, Delivery | None]:
        return await store.retry(args.id, now), await store.get(args.id)

    retried, delivery = _using(stores_for(config).outbox, retry)
    if delivery is None:
        print(f"no delivery with id {args.id}", file=sys.stderr)
        return 1
    if not retried and delivery.status is DeliveryStatus.SENT:
        # What the operator wants is already true: not a failure.
        sent = f" at {delivery.finished_at:%Y-%m-%d %H:%M:%S} UTC" if delivery.finished_at else ""
        print(f"delivery {args.id} was sent{sent}; nothing to retry")
        return 0
    print(f"delivery {args.id} is due again; a running alertbridge sends it within a second")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Opening a store migrates it (PostgreSQL: under an advisory lock, so a
    replica starting meanwhile waits); this opens both and closes them."""
    config = load_from_args(args)
    stores = stores_for(config)

    async def run() -> None:
        async with contextlib.AsyncExitStack() as opened:
            for store in (stores.outbox, stores.state):  # the outbox first, closed last
                await store.open()
                opened.push_async_callback(store.close)

    asyncio.run(run())
    print(f"{args.config}: the store's tables are up to date")
    return 0


def _audit_list(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    entries = _using(stores_for(config).state, lambda state: state.list_audit(args.limit))
    ids = f"{'ID':>6}  " if args.ids else ""
    print(f"{ids}{'TIME (UTC)':19}  {'USER':16}  {'ACTION':18}  {'REF':>5}  {'RESULT':8}  SILENCE / DETAIL")
    for e in entries:
        ref = f"#{e.ref}" if e.ref is not None else "-"
        entry_id = f"{e.id:>6}  " if args.ids else ""
        print(
            f"{entry_id}{e.at:%Y-%m-%d %H:%M:%S}  {e.user[:16]:16}  {e.action[:18]:18}  {ref:>5}  {e.result:8}  "
            f"{e.silence_id or ''} {e.detail}".rstrip()
        )
    if not entries:
        print("(none)")
    return 0


def _audit_attachment(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    kept = _using(stores_for(config).state, lambda state: state.get_attachment(args.id))
    if kept is None:
        print(f"audit entry {args.id} has no attachment", file=sys.stderr)
        return 1
    # Only the name's last part: a member chose it, and it must not climb out of here.
    target = (
        args.output if args.output is not None else Path(Path(kept.filename).name or f"attachment-{args.id}")
    )
    target.write_bytes(kept.data)
    print(f"wrote {kept.kind} {kept.filename!r} ({kept.size} bytes, {kept.content_type}) to {target}")
    return 0
