"""Messengers: where rendered messages go — the port the delivery core talks to.

A messenger owns one or more receiver ``channel`` kinds (WeCom: ``app`` and
``robot``; the built-in console: ``console``). For each configured receiver it
provides a ``Channel`` that delivers one rendered message and reports a
``Receipt``; and, as a ``Messenger``, whatever else the core must ask about
its receivers without knowing the messenger: message shapes of its own (a
WeCom template card), @mentions inside the content, the rate limits a send
counts against, what to do when a group resolves (turn cards into
"Resolved") and what to remember after a send (the cards' response codes).
``Messengers`` finds the messenger of a receiver.

Each messenger lives in its own module or package (``wecom``, ``console``); ``alertbridge.messengers.registry`` is the
one place listing them, and the composition root builds them from there.

Every channel implements one method, ``send``, and reports failure by raising
``TransientDeliveryError`` (retry later) or ``PermanentDeliveryError``
(dead-letter). Retry policy is not a channel's business: the dispatcher owns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from alertbridge.config_base import Language, ReceiverBase
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.model import Ack, AlertGroup

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``allowed`` sends to ``key`` in any ``window``."""

    key: str
    window: timedelta
    allowed: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a successful send reports back (for logs; msgid enables recall)."""

    msgid: str | None = None
    # For interactive cards: lets alertbridge update the card once (WeCom).
    response_code: str | None = None


class Channel(Protocol):
    kind: str  # the receiver's channel kind ("app", "robot", "console" …): selects the byte limits

    @property
    def duplicate_check(self) -> timedelta | None:
        """How long the messenger itself hides an identical re-send (WeCom's
        ``enable_duplicate_check``); None when it has no such check. Decides
        whether a part a crash cut off is re-sent as is or marked as a repeat."""
        ...

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        """Send one message.

        Raises:
            TransientDeliveryError: try again later.
            PermanentDeliveryError: retrying cannot help.
        """
        ...


@dataclass(frozen=True, slots=True)
class Notification:
    """What a messenger is told about a notification it may shape itself."""

    receiver: str  # the receiver's name
    group: AlertGroup
    ref: int  # the group's reference (#27)
    ack: Ack | None
    language: Language
    at: datetime  # when the notification was accepted: re-renders stay identical
    delivery_id: int


class Messenger(Protocol):
    """One messenger, as the delivery core sees it.

    Implementations subclass this protocol to inherit the defaults: a messenger
    with nothing of its own to add (the console) only names its kinds and limits.
    """

    # The receiver ``channel`` kinds it owns.
    kinds: tuple[str, ...]
    # (channel kind, msgtype) -> most UTF-8 bytes of one message's content.
    byte_limits: Mapping[tuple[str, str], int]

    def compose(self, notification: Notification, receiver: ReceiverBase) -> list[RenderedMessage] | None:
        """The messages of a notification in a shape of the messenger's own (a
        WeCom template card); None: the receiver's template renders it."""
        return None

    def dress(
        self, messages: Sequence[RenderedMessage], notification: Notification, receiver: ReceiverBase
    ) -> list[RenderedMessage] | None:
        """The template-rendered ``messages`` in the messenger's structured shape
        (a WeCom textcard's title and link around each rendered description).
        None: this group cannot take that shape, render it as ``receiver.digest_msgtype``
        instead. By default the messages go as rendered."""
        return list(messages)

    def mark_repeat(self, message: RenderedMessage, mark: str) -> RenderedMessage:
        """A re-sent ``message`` whose content already starts with ``mark``
        ("(repeat) "), marked where else the user sees it first: a messenger's
        structured message (a WeCom card) does not show its content. By default
        the content is all there is."""
        return message

    def content_mentions(self, recipients: Recipients, channel_kind: str, msgtype: str) -> list[str]:
        """The @mentions the renderer puts into the content (``Renderer.render(mentions=...)``)."""
        return []

    def limits_for(self, receiver: ReceiverBase, recipients: Recipients) -> tuple[RateLimit, ...]:
        """The rate limits a message from ``receiver`` to ``recipients`` counts against."""
        return ()

    async def has_resolution_work(self, ref: int, receiver: ReceiverBase) -> bool:
        """Whether ``on_resolved`` has anything to update for group ``ref``.

        Asked on the send path, so it must be cheap (no call to the messenger's
        servers): True makes the resolved delivery wait for the upkeep to run
        ``on_resolved``."""
        return False

    async def on_resolved(self, ref: int, receiver_name: str, receiver: ReceiverBase) -> bool:
        """Group ``ref`` resolved: update what the messenger showed for it (cards
        turn "Resolved"). True: every such message now says so and no resolved
        message needs to be sent. Run by the upkeep task, never on the send path."""
        return False

    async def after_sent(
        self,
        ref: int,
        receiver: ReceiverBase,
        users: Sequence[str],
        sent: Sequence[tuple[RenderedMessage, Receipt]],
    ) -> None:
        """Remember what the messenger needs of messages sent for group ``ref``
        (a card's one-use response code)."""
        return None


class Messengers:
    """Every configured messenger, found by the receiver ``channel`` kinds they own."""

    def __init__(self, messengers: Iterable[Messenger]) -> None:
        self._by_kind: dict[str, Messenger] = {}
        for messenger in messengers:
            for kind in messenger.kinds:
                if kind in self._by_kind:
                    raise ValueError(f"two messengers claim the receiver channel {kind!r}")
                self._by_kind[kind] = messenger

    def of(self, receiver: ReceiverBase) -> Messenger:
        """The messenger delivering ``receiver``'s messages.

        Raises:
            KeyError: no messenger owns its channel kind.
        """
        return self._by_kind[receiver.channel]

    @property
    def byte_limits(self) -> dict[tuple[str, str], int]:
        """Every messenger's byte limits, for the renderer."""
        limits: dict[tuple[str, str], int] = {}
        for messenger in dict.fromkeys(self._by_kind.values()):
            limits.update(messenger.byte_limits)
        return limits
