"""``alertbridge send``: one message — text, markdown or a file of any media type —
to one WeCom receiver, for scripts and cron jobs.

Why it sends itself instead of queueing in the outbox: the outbox holds alert
groups that the delivery core renders through templates, merges into digests
and ties to acks; a one-off carries no group and may carry 20 MB of bytes,
which would need a second kind of row in both stores, handled everywhere a
row is. Sending directly keeps one job in one place and gives the script a
real answer: exit 0 means *WeCom accepted it*, not "queued". What must be
shared with a running service is shared: every send reserves its slots in
the rate budget of the same store (``SharedBudget``, atomic across the
service's replicas and this process), so a cron job cannot push a member or a
robot past WeCom's limits, and errors are WeCom's errcodes classified as for
every other send. A temporary failure (the budget full beyond ``wait``, a
retryable errcode, a network failure) exits with ``EXIT_TEMPORARY`` so the
caller can try again; nothing is left half-sent in a store.

Bad input — a missing file, a file over its type's limit, bytes of the wrong
type, text over the message limit, an unknown or unfit receiver — is refused
by ``prepare`` before the store or WeCom is touched.

``--textcard TITLE DESCRIPTION URL`` sends a text card (app and appchat
receivers; WeCom's title, description and URL limits checked like the rest).

An appchat receiver's one-off goes into its chat (``appchat/send``) and
counts against the same budget keys as its alerts: the chat's and each of
its members' (asked of ``appchat/get`` first, as the service does after a send).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import TextIO

from alertbridge.config import Config, load_config
from alertbridge.delivery.budget import SendBudget, SharedBudget
from alertbridge.delivery.outcome import not_arrived
from alertbridge.errors import AlertbridgeError, DeliveryError
from alertbridge.logs import configure_logging
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers.wecom.app import AppChannel
from alertbridge.messengers.wecom.appchat import AppChatChannel, ChatMembers
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import AppChatReceiver, AppReceiver, RobotReceiver
from alertbridge.messengers.wecom.limits import (
    BTNTXT_CHARS,
    DESCRIPTION_BYTES,
    TITLE_BYTES,
    URL_BYTES,
    WECOM_BYTE_LIMITS,
    limits_for,
)
from alertbridge.messengers.wecom.media_rules import (
    MediaFile,
    MediaKind,
    MediaRejected,
    check_media,
    check_size,
)
from alertbridge.messengers.wecom.robot import ROBOT_IMAGE_LIMIT, RobotChannel
from alertbridge.stores import OutboxStore, stores_for

DEFAULT_WAIT = timedelta(seconds=60)
# The receivers a one-off can go to.
OneOffReceiver = AppReceiver | AppChatReceiver | RobotReceiver


class ExitCode(IntEnum):
    SENT = 0
    REFUSED = 1  # WeCom refused it for good (an errcode retrying cannot fix)
    BAD_INPUT = 2  # refused before anything was stored or sent
    TEMPORARY = 75  # EX_TEMPFAIL: try again later


class BadInput(AlertbridgeError):
    """The command line asks for something that cannot be sent; nothing was touched."""


@dataclass(frozen=True, slots=True)
class OneOff:
    """What to send, checked: either ``message`` (text / markdown) or ``media``."""

    receiver: str
    settings: OneOffReceiver
    recipients: Recipients
    message: RenderedMessage | None = None
    media: MediaFile | None = None

    @property
    def what(self) -> str:
        if self.media is not None:
            return f"{self.media.kind} {self.media.filename!r} ({self.media.size} bytes)"
        assert self.message is not None
        return f"{self.message.msgtype} ({self.message.byte_count}/{self.message.limit} bytes)"


def prepare(config: Config, receiver: str, msgtype: str, values: Sequence[str]) -> OneOff:
    """Check the request: ``msgtype`` is text/markdown (``values``: the content),
    a media type (the file's path) or textcard (title, description, URL).

    Raises:
        BadInput: one line saying what is wrong.
    """
    settings = config.receivers.get(receiver)
    if settings is None:
        known = ", ".join(sorted(config.receivers)) or "none"
        raise BadInput(f"no receiver {receiver!r} in the config (configured: {known})")
    if not isinstance(settings, OneOffReceiver):
        raise BadInput(
            f"receiver {receiver!r} is a {settings.channel} receiver; "
            "send takes app, appchat and robot receivers"
        )
    recipients = _recipients(settings)
    if msgtype == "textcard":
        title, description, url = values
        card = _textcard(config, receiver, settings, title, description, url)
        return OneOff(receiver, settings, recipients, message=card)
    (value,) = values
    if msgtype in ("text", "markdown"):
        limit = WECOM_BYTE_LIMITS[(settings.channel, msgtype)]
        message = RenderedMessage(msgtype, value, limit)
        if not value.strip():
            raise BadInput(f"the {msgtype} is empty")
        if message.byte_count > limit:
            raise BadInput(
                f"the {msgtype} has {message.byte_count} bytes; {settings.channel} {msgtype} messages may have {limit}"
            )
        return OneOff(receiver, settings, recipients, message=message)
    kind = MediaKind(msgtype)
    if isinstance(settings, RobotReceiver) and kind is MediaKind.VIDEO:
        raise BadInput(f"receiver {receiver!r} is a group robot, which cannot send a video")
    path = Path(value)
    try:
        # The size first: a file far over the limit is never read.
        check_size(kind, path.stat().st_size, path.name)
        media = check_media(kind, path.read_bytes(), path.name)
    except OSError as exc:
        raise BadInput(f"{value}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except MediaRejected as exc:
        raise BadInput(f"{value}: {exc}") from None
    if isinstance(settings, RobotReceiver) and kind is MediaKind.IMAGE and media.size > ROBOT_IMAGE_LIMIT:
        raise BadInput(
            f"{value}: {media.size} bytes; a group robot's image may have {ROBOT_IMAGE_LIMIT} (2 MB)"
        )
    return OneOff(receiver, settings, recipients, media=media)


@dataclass(frozen=True, slots=True)
class OneOffResult:
    code: ExitCode
    detail: str


async def send_oneoff(
    config: Config,
    oneoff: OneOff,
    client: WeComClient,
    store: OutboxStore,
    *,
    wait: timedelta = DEFAULT_WAIT,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> OneOffResult:
    """Send ``oneoff`` within the shared rate budget (waiting up to ``wait`` for a slot)."""
    members: tuple[str, ...] = ()
    settings = oneoff.settings
    if isinstance(settings, AppChatReceiver):
        chats = ChatMembers(client)
        await chats.refresh(settings.app, config.wecom.apps[settings.app], settings.chatid)
        members = chats.known(config.wecom.apps[settings.app], settings.chatid)
    limits = limits_for(config.wecom, config.receivers.values(), settings, oneoff.recipients, members)
    budget = SharedBudget(SendBudget(), store)
    deadline = clock() + wait
    while True:
        at = clock()
        reservation = await budget.reserve(limits, at, 0, send_timeout=config.send_timeout)
        if reservation is not None:
            break
        free = budget.memory.next_free(limits, at)
        if free > deadline:
            return OneOffResult(
                ExitCode.TEMPORARY, f"rate budget of {oneoff.receiver} is spent until {free:%H:%M:%S} UTC"
            )
        await asyncio.sleep(max(0.05, (free - at).total_seconds()))
    try:
        await _deliver(config, oneoff, client)
    except DeliveryError as exc:
        code = ExitCode.TEMPORARY if exc.retryable else ExitCode.REFUSED
        if not_arrived(exc):
            await budget.refund(limits, reservation, at)
            return OneOffResult(code, f"{exc.reason}: {exc}")
        # A timeout or a broken connection: WeCom may have taken it and counts
        # it against the receiver, so its slots stay spent (as the dispatcher's).
        await budget.settle(limits, reservation, at, clock())
        return OneOffResult(code, f"{exc.reason}: {exc} (it may have arrived all the same)")
    await budget.settle(limits, reservation, at, clock())
    return OneOffResult(ExitCode.SENT, f"sent {oneoff.what} to {oneoff.receiver}")


async def _deliver(config: Config, oneoff: OneOff, client: WeComClient) -> None:
    settings = oneoff.settings
    if isinstance(settings, AppReceiver | AppChatReceiver):
        app = (
            AppChannel(client, settings.app, config.wecom.apps[settings.app])
            if isinstance(settings, AppReceiver)
            else AppChatChannel(client, settings.app, config.wecom.apps[settings.app], settings.chatid)
        )
        if oneoff.media is not None:
            await app.send_media(oneoff.media, oneoff.recipients)
        else:
            assert oneoff.message is not None
            await app.send(oneoff.message, oneoff.recipients)
        return
    robot = RobotChannel(client, settings.robot_key)
    if oneoff.media is not None:
        await robot.send_media(oneoff.media)
    else:
        assert oneoff.message is not None
        await robot.send(oneoff.message, oneoff.recipients)


def _textcard(
    config: Config,
    receiver: str,
    settings: OneOffReceiver,
    title: str,
    description: str,
    url: str,
) -> RenderedMessage:
    """A ``textcard`` (docs §4.3, §6): app and appchat receivers, each field within WeCom's limits."""
    if isinstance(settings, RobotReceiver):
        raise BadInput(f"receiver {receiver!r} is a group robot, which cannot send a textcard")
    for name, text, limit in (("title", title, TITLE_BYTES), ("description", description, DESCRIPTION_BYTES)):
        size = len(text.encode("utf-8"))
        if not text.strip():
            raise BadInput(f"the textcard {name} is empty")
        if size > limit:
            raise BadInput(f"the textcard {name} has {size} bytes; WeCom allows {limit}")
    if not url.startswith(("http://", "https://")) or len(url.encode("utf-8")) > URL_BYTES:
        raise BadInput(f"the textcard URL must be an http(s) URL of at most {URL_BYTES} bytes")
    button = "详情" if config.language_of(receiver) == "zh" else "More"
    card = {"title": title, "description": description, "url": url, "btntxt": button[:BTNTXT_CHARS]}
    return RenderedMessage("textcard", description, DESCRIPTION_BYTES, card=card)


def _recipients(settings: OneOffReceiver) -> Recipients:
    """An app receiver's configured users, departments and tags; a chat's or a robot's group (no mentions)."""
    if isinstance(settings, AppReceiver):
        return Recipients(
            to_user=tuple(settings.to_user), to_party=tuple(settings.to_party), to_tag=tuple(settings.to_tag)
        )
    return Recipients()


def run_send(
    config: Config,
    receiver: str,
    msgtype: str,
    values: Sequence[str],
    wait: timedelta,
    out: TextIO,
    err: TextIO,
) -> int:
    """The ``send`` command: check, then send; one line on ``out`` (sent) or ``err``; the exit code."""
    from alertbridge.app import new_http_client  # the composition root: only when sending

    try:
        oneoff = prepare(config, receiver, msgtype, values)
    except BadInput as exc:
        print(f"alertbridge send: {exc}", file=err)
        return int(ExitCode.BAD_INPUT)

    async def run() -> OneOffResult:
        configure_logging(config.secrets(), err, config.log.level, config.log.format)
        store = stores_for(config).outbox
        await store.open()
        try:
            async with new_http_client(config) as http:
                client = WeComClient(http, config.wecom.api_base)
                return await send_oneoff(config, oneoff, client, store, wait=wait)
        finally:
            await store.close()

    result = asyncio.run(run())
    if result.code is ExitCode.SENT:
        print(result.detail, file=out)
    else:
        print(f"alertbridge send: not sent: {result.detail}", file=err)
    return int(result.code)


_TYPES = ("text", "markdown", "textcard", "image", "file", "voice", "video")


def add_send_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``send`` to the CLI's commands."""
    help_text = "send one message or file to a receiver, for scripts and cron jobs"
    send = commands.add_parser("send", help=help_text, description=help_text)
    send.add_argument("-c", "--config", required=True, type=Path, help="the TOML config file")
    send.add_argument("--receiver", required=True)
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", metavar="TEXT")
    what.add_argument("--markdown", metavar="TEXT")
    for kind, limit in (
        ("image", "JPG/PNG, 10 MB"),
        ("file", "20 MB"),
        ("voice", "AMR, 2 MB, 60 s"),
        ("video", "MP4, 10 MB"),
    ):
        what.add_argument(f"--{kind}", metavar="PATH", help=f"a {kind} ({limit})")
    what.add_argument(
        "--textcard", nargs=3, metavar=("TITLE", "DESCRIPTION", "URL"), help="app and appchat receivers"
    )
    send.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait for a slot in the rate budget",
    )
    send.set_defaults(run=_send)


def _send(args: argparse.Namespace) -> int:
    msgtype = next(kind for kind in _TYPES if getattr(args, kind) is not None)
    config = load_config(args.config, os.environ)
    wait = timedelta(seconds=args.wait)
    value = getattr(args, msgtype)
    values = value if isinstance(value, list) else [value]
    return run_send(config, args.receiver, msgtype, values, wait, sys.stdout, sys.stderr)
