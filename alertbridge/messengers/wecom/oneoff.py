"""``alertbridge send``: one message — text, markdown, a text card or a file
of any media type — to one WeCom receiver, for scripts and cron jobs.

It goes the way alerts go: ``send`` checks everything, then commits one
delivery to the outbox of the store the config names and exits 0 — accepted
means the running service (any replica's dispatcher) will deliver it within
the shared rate budget, retrying, or dead-letter it with a reason, counted
in /metrics like every other send; a service that is down sends it once it
is up. ``--wait SECONDS`` follows it: exit 0 once sent, 1 when dead-lettered,
75 when still pending at the end.

The delivery carries a ``OneOffMessage`` (``alertbridge.stores.outbox``): the
message ready to send, never rendered or merged into a digest — when the
budget is spent it waits for a slot. A file is uploaded here, before the
delivery is stored (``stored_message``): its bytes, up to 20 MB, never go
into the store, and its media_id outlives any wait (3 days).

Bad input — a missing file, a file over its type's limit, bytes of the wrong
type, text over the message limit, an unknown or unfit receiver — is refused
by ``prepare`` (exit 2) before the store or WeCom is touched. An upload
WeCom refuses exits 1 (for good) or 75 (try again), nothing stored.

``--textcard TITLE DESCRIPTION URL`` sends a text card (app and appchat
receivers; WeCom's title, description and URL limits checked like the rest).
An appchat receiver's one-off goes into its chat (``appchat/send``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO, cast

from alertbridge.config import Config, load_config
from alertbridge.errors import AlertbridgeError, DeliveryError, StoreError
from alertbridge.logs import configure_logging
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import AppChatReceiver, AppReceiver, RobotReceiver
from alertbridge.messengers.wecom.limits import (
    BTNTXT_CHARS,
    DESCRIPTION_BYTES,
    TITLE_BYTES,
    URL_BYTES,
    WECOM_BYTE_LIMITS,
)
from alertbridge.messengers.wecom.media_rules import (
    MediaFile,
    MediaKind,
    MediaRejected,
    check_media,
    check_size,
)
from alertbridge.messengers.wecom.robot import ROBOT_IMAGE_LIMIT, build_robot_image_body
from alertbridge.model import AlertGroup, Status
from alertbridge.stores import DeliveryStatus, NewDelivery, OneOffMessage, OutboxStore, stores_for

# How often ``--wait`` looks at the delivery.
WAIT_POLL = 0.2
# The receivers a one-off can go to.
OneOffReceiver = AppReceiver | AppChatReceiver | RobotReceiver


class ExitCode(IntEnum):
    SENT = 0  # queued (and, with --wait, sent)
    REFUSED = 1  # WeCom refused it for good: the upload, or (--wait) the send, dead-lettered
    BAD_INPUT = 2  # refused before anything was stored or sent
    TEMPORARY = 75  # EX_TEMPFAIL: not queued (try again later), or (--wait) not sent yet


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


async def stored_message(config: Config, oneoff: OneOff, client: WeComClient) -> OneOffMessage:
    """``oneoff`` as the outbox stores it: a media file uploaded now, its media_id kept.

    Uploaded here, not by the service: the bytes (up to 20 MB) never enter the
    store, and a path read later could name a file changed or gone by then.
    The id is valid for 3 days (docs §7), far longer than a delivery waits.
    A robot's image has no media id (docs §5): its section carries the bytes
    (at most 2 MB, checked by ``prepare``).

    Raises:
        DeliveryError: the upload failed; nothing was stored.
    """
    if oneoff.message is not None:
        message = oneoff.message
        return OneOffMessage(message.msgtype, message.content, message.limit, message.card, oneoff.what)
    media = oneoff.media
    assert media is not None
    settings = oneoff.settings
    section: dict[str, Any]
    if isinstance(settings, RobotReceiver):
        if media.kind is MediaKind.IMAGE:
            section = dict(cast(dict[str, Any], build_robot_image_body(media.data)["image"]))
        else:
            key = settings.robot_key.get_secret_value()
            section = {"media_id": await client.upload_robot_media(key, media)}
    else:
        section = {
            "media_id": await client.upload_media(settings.app, config.wecom.apps[settings.app], media)
        }
    return OneOffMessage(str(media.kind), media.filename, media.size, section, oneoff.what)


def placeholder_group(receiver: str) -> AlertGroup:
    """The outbox row's group (a column every delivery has): no alerts, never rendered."""
    return AlertGroup(
        source="alertbridge send", status=Status.FIRING, group_key=f"send:{receiver}", alerts=()
    )


async def enqueue_oneoff(
    config: Config,
    oneoff: OneOff,
    client: WeComClient,
    store: OutboxStore,
    *,
    wait: timedelta = timedelta(0),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> OneOffResult:
    """Upload any media, store ``oneoff`` as one delivery and, with ``wait``,
    follow it until the service sent or dead-lettered it.

    Committed, it is the service's (any replica's dispatcher): sent within
    the shared rate budget, retried, or dead-lettered with a reason, exactly
    as an alert's delivery — and counted in /metrics.
    """
    try:
        message = await stored_message(config, oneoff, client)
    except DeliveryError as exc:
        code = ExitCode.TEMPORARY if exc.retryable else ExitCode.REFUSED
        return OneOffResult(code, f"upload failed: {exc.reason}: {exc}")
    delivery_id = await store.enqueue(
        NewDelivery(
            receiver=oneoff.receiver,
            channel=oneoff.settings.channel,
            recipients=oneoff.recipients,
            group=placeholder_group(oneoff.receiver),
            request_id=f"send-{uuid.uuid4().hex[:16]}",
            accepted_at=clock(),
            oneoff=message,
        )
    )
    queued = f"queued {oneoff.what} to {oneoff.receiver}: delivery {int(delivery_id)}"
    deadline = clock() + wait
    while wait > timedelta(0):
        delivery = await store.get(delivery_id)
        if delivery is not None and delivery.status is DeliveryStatus.SENT:
            return OneOffResult(
                ExitCode.SENT, f"sent {oneoff.what} to {oneoff.receiver}: delivery {int(delivery_id)}"
            )
        if delivery is not None and delivery.status is DeliveryStatus.DEAD:
            return OneOffResult(
                ExitCode.REFUSED, f"delivery {int(delivery_id)} is dead: {delivery.last_error}"
            )
        if clock() >= deadline:
            why = f": {delivery.last_error}" if delivery is not None and delivery.last_error else ""
            return OneOffResult(ExitCode.TEMPORARY, f"{queued}, not sent yet{why}")
        await asyncio.sleep(WAIT_POLL)
    return OneOffResult(ExitCode.SENT, queued)


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
    """The ``send`` command: check, then queue; one line on ``out`` (queued or sent) or ``err``; the exit code."""
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
                return await enqueue_oneoff(config, oneoff, client, store, wait=wait)
        finally:
            await store.close()

    try:
        result = asyncio.run(run())
    except StoreError as exc:
        result = OneOffResult(ExitCode.TEMPORARY, f"the outbox did not take it: {exc}")
    if result.code is ExitCode.SENT:
        print(result.detail, file=out)
    else:
        print(f"alertbridge send: {result.detail}", file=err)
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
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the service to send it (exit 0 sent, 1 dead-lettered, 75 not yet)",
    )
    send.set_defaults(run=_send)


def _send(args: argparse.Namespace) -> int:
    msgtype = next(kind for kind in _TYPES if getattr(args, kind) is not None)
    config = load_config(args.config, os.environ)
    wait = timedelta(seconds=args.wait)
    value = getattr(args, msgtype)
    values = value if isinstance(value, list) else [value]
    return run_send(config, args.receiver, msgtype, values, wait, sys.stdout, sys.stderr)
