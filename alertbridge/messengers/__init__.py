"""Messengers: where rendered messages go (WeCom today, others later).

A messenger provides, for each receiver ``channel`` kind it owns, a
``Channel`` that delivers one rendered message to its recipients and
reports a ``Receipt``; its config section model; and, when people can
answer, the callback routes that turn replies into commands. Each
messenger lives in its own package (``alertbridge.messengers.wecom``);
``alertbridge.messengers.registry`` is the one place mapping a receiver's
``channel`` to its implementation, and ``console`` is the built-in one.

Every channel implements one method, ``send``, and reports failure by raising
``TransientDeliveryError`` (retry later) or ``PermanentDeliveryError``
(dead-letter). Retry policy is not a channel's business: the dispatcher owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from alertbridge.message import Recipients, RenderedMessage


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a successful send reports back (for logs; msgid enables recall)."""

    msgid: str | None = None
    # For interactive cards: lets alertbridge update the card once (WeCom).
    response_code: str | None = None


class Channel(Protocol):
    kind: str  # "app" | "robot" | "console": selects the byte limits

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
