"""The ``alertbridge`` command.

    serve         run the service
    check-config  validate a config file, compile and smoke-render its templates
    render        print the messages a receiver would be sent for a payload, with byte counts
    send-test     send those messages (a sample alert by default) through the real client
    send          send one text, markdown or file to a receiver, within the shared rate budget
    outbox        list deliveries, or retry a dead one
    audit         list who acknowledged or silenced what (and files members sent)
    menu          install a WeCom app's menu from its menu_commands

Exit codes: 0 ok, 1 a check or send failed, 2 usage error (argparse) or bad
input to ``send``, 75 ``send`` failed for now (try again later).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from alertbridge import __version__
from alertbridge.config import Config, ReceiverConfig, load_config
from alertbridge.delivery import SendBudget
from alertbridge.errors import AlertbridgeError, DeliveryError
from alertbridge.messengers import Messengers
from alertbridge.messengers.wecom.appchat_cli import add_appchat_commands
from alertbridge.messengers.wecom.limits import limits_for
from alertbridge.messengers.wecom.menu_install import add_menu_commands
from alertbridge.messengers.wecom.oneoff import add_send_command
from alertbridge.model import AlertGroup
from alertbridge.stores import Delivery, DeliveryStatus, OutboxStore, stores_for


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.run(args)
        # Flushed here, so a reader gone meanwhile is caught below, not at exit.
        sys.stdout.flush()
    except AlertbridgeError as exc:
        print(exc, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `alertbridge outbox list | head`: the reader has what it wanted.
        # Point stdout at /dev/null so the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertbridge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"alertbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: object, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", required=True, type=Path, help="the TOML config file")
        sub.set_defaults(run=run)
        return sub

    command("serve", _serve, "run the service")
    check = command("check-config", _check_config, "validate a config file and its templates")
    check.add_argument(
        "--online",
        action="store_true",
        help="also try the WeCom apps, robot keys and silencers (sends nothing)",
    )
    render = command("render", _render, "print the messages a receiver would be sent for a payload")
    send = command("send-test", _send_test, "send a sample alert to a receiver through the real path")
    for sub, required in ((render, True), (send, False)):
        sub.add_argument("--receiver", required=True)
        group = sub.add_mutually_exclusive_group(required=required)
        group.add_argument("--payload", type=Path, help="an Alertmanager or Grafana webhook JSON file")
        group.add_argument(
            "--sample", action="store_true", help="the built-in sample group (send-test's default)"
        )
    command("migrate", _migrate, "create or upgrade the store's tables, then exit (serve does it too)")

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
    add_appchat_commands(commands)
    add_menu_commands(commands)
    add_send_command(commands)
    return parser


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, os.environ)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from alertbridge.app import create_app
    from alertbridge.logs import configure_logging
    from alertbridge.startup import bind_listen
    from alertbridge.web.limits import ConnectionLimits, guarded_http_protocol

    config = _load(args)
    # Both before any log line: a second instance or a taken port is one clear error.
    store_lock = stores_for(config).lock_for_serving()
    listener = bind_listen(config.server.host, config.server.port)
    configure_logging(config.secrets(), sys.stderr, config.log.level, config.log.format)
    app = create_app(
        config,
        config_source=str(args.config),
        config_path=Path(args.config),
        environ=os.environ,
        out=sys.stdout,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            # Limits that hold before authentication: head size and time, body time, connections.
            http=guarded_http_protocol(
                ConnectionLimits(
                    max_header_bytes=config.server.max_header_bytes,
                    header_timeout=config.server.header_timeout.total_seconds(),
                    body_timeout=config.server.body_timeout.total_seconds(),
                )
            ),
            limit_concurrency=config.server.max_connections,
        )
    )
    try:
        server.run(sockets=[listener])
    finally:
        store_lock.close()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from alertbridge.app import build_renderer, unauthenticated_warnings
    from alertbridge.commands.authz import command_warnings

    config = _load(args)
    build_renderer(config, str(args.config))
    for key, warning in [*unauthenticated_warnings(config), *command_warnings(config)]:
        print(f"{args.config}: {key}: warning: {warning}", file=sys.stderr)
    print(
        f"{args.config}: OK ({len(config.receivers)} receivers, {len(config.wecom.apps)} WeCom apps; "
        "every template compiled and rendered against sample data)"
    )
    if args.online:
        from alertbridge.messengers.registry import online_checks
        from alertbridge.online_check import run_online_checks

        return 0 if asyncio.run(run_online_checks(config, sys.stdout, online_checks())) else 1
    return 0


def _render(args: argparse.Namespace) -> int:
    from alertbridge.app import build_renderer
    from alertbridge.preview import PREVIEW_REF, preview, write_preview

    config = _load(args)
    _receiver(config, args.receiver)
    now = datetime.now(UTC)
    group = _group(args, now)
    if group is None:
        return 1
    renderer = build_renderer(config, str(args.config))
    shown = preview(config, renderer, _composing(config), args.receiver, group, now=now, ref=PREVIEW_REF)
    write_preview(sys.stdout, shown)
    print(
        f"{args.receiver}: composed as the dispatcher sends it; reference shown as #{PREVIEW_REF}, "
        "a real notification carries its group's own",
        file=sys.stderr,
    )
    return 0


def _composing(config: Config) -> Messengers:
    """The messengers as the dispatcher has them, for composing a preview only."""
    from alertbridge.messengers.registry import MessengerDeps, build_messengers

    return build_messengers(MessengerDeps(config=config, client=None, out=sys.stdout), None)


def _group(args: argparse.Namespace, now: datetime) -> AlertGroup | None:
    """The group ``--payload`` names, else the built-in sample; None (said on stderr) when unreadable."""
    from alertbridge.preview import load_group
    from alertbridge.render import sample_group

    if args.payload is None:
        return sample_group(now)
    try:
        return load_group(args.payload, now)
    except OSError as exc:
        print(f"{args.payload}: cannot read: {exc.strerror}", file=sys.stderr)
        return None


def _send_test(args: argparse.Namespace) -> int:
    config = _load(args)
    _receiver(config, args.receiver)
    group = _group(args, datetime.now(UTC))
    return 1 if group is None else asyncio.run(_send_test_async(config, args, group))


async def _send_test_async(config: Config, args: argparse.Namespace, group: AlertGroup) -> int:
    from alertbridge.app import build_image_fetcher, build_renderer, new_http_client
    from alertbridge.logs import configure_logging
    from alertbridge.messengers.registry import MessengerDeps, build_channel
    from alertbridge.messengers.wecom.client import WeComClient
    from alertbridge.preview import TEST_REF, marked_as_test, preview

    configure_logging(config.secrets(), sys.stderr, config.log.level, config.log.format)
    renderer = build_renderer(config, str(args.config))
    shown = preview(
        config, renderer, _composing(config), args.receiver, group, now=datetime.now(UTC), ref=TEST_REF
    )
    language = config.language_of(args.receiver)
    print(f"reference #{TEST_REF} is a placeholder no alert has: replies and card buttons on it are refused")
    images, image_http = build_image_fetcher(config)
    async with new_http_client(config) as http, image_http:
        client = WeComClient(http, config.wecom.api_base)
        deps = MessengerDeps(config=config, client=client, out=sys.stdout, images=images)
        channel = build_channel(args.receiver, config.receivers[args.receiver], deps)
        for message in (marked_as_test(m, language) for m in shown.messages):
            try:
                receipt = await channel.send(message, shown.recipients)
            except DeliveryError as exc:
                kind = "retryable" if exc.retryable else "permanent"
                print(f"FAILED part {message.part}/{message.parts} ({kind}, {exc.reason}): {exc}")
                return 1
            print(
                f"sent part {message.part}/{message.parts} to {args.receiver} ({message.msgtype}, "
                f"{message.byte_count}/{message.limit} bytes, {len(message.images)} images, "
                f"msgid {receipt.msgid or '-'})"
            )
    return 0


def _receiver(config: Config, name: str) -> ReceiverConfig:
    if name not in config.receivers:
        known = ", ".join(sorted(config.receivers)) or "none"
        raise SystemExit(f"no receiver {name!r} in the config (configured: {known})")
    return config.receivers[name]


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
    config = _load(args)
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
    config = _load(args)
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
    config = _load(args)
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
    config = _load(args)
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
    config = _load(args)
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
