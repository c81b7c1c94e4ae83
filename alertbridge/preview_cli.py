"""``alertbridge render`` and ``alertbridge send-test``: the messages a receiver
would be sent for a payload, printed or sent through the real client."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from alertbridge.config import Config, ReceiverConfig
from alertbridge.config_command import config_command, load_from_args
from alertbridge.errors import DeliveryError
from alertbridge.messengers import Messengers
from alertbridge.model import AlertGroup


def add_preview_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``render`` and ``send-test`` to the CLI's commands."""
    render = config_command(
        commands, "render", _render, "print the messages a receiver would be sent for a payload"
    )
    send = config_command(
        commands, "send-test", _send_test, "send a sample alert to a receiver through the real path"
    )
    for sub, required in ((render, True), (send, False)):
        sub.add_argument("--receiver", required=True)
        group = sub.add_mutually_exclusive_group(required=required)
        group.add_argument("--payload", type=Path, help="an Alertmanager or Grafana webhook JSON file")
        group.add_argument(
            "--sample", action="store_true", help="the built-in sample group (send-test's default)"
        )


def _render(args: argparse.Namespace) -> int:
    from alertbridge.app import build_renderer
    from alertbridge.preview import PREVIEW_REF, preview, write_preview

    config = load_from_args(args)
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
    config = load_from_args(args)
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
