"""Accepting webhooks comes before delivering them, when both want the one core.

A webhook is answered 200 only after its commit, and its sender waits for
that answer (Alertmanager gives up after its timeout and sends again); a
delivery waits in the outbox at no risk, and WeCom's per-member limits pace
it anyway. So while webhooks are being accepted, the dispatcher takes a
bounded share of the event loop instead of an equal turn: after each send it
pauses ``YIELD_FACTOR`` times as long as the send took, which leaves
accepting at least three quarters of the time under a flood, and costs
nothing when no webhook is in flight (the latency of a lone alert is
untouched). Under a sustained flood the dispatcher still progresses at its
share, so nothing waits forever.

"How long the send took" is wall time, its wait for WeCom's answer included:
that errs towards longer pauses for slow sends, which ``MAX_PAUSE`` bounds,
and each target's worker pauses on its own, so targets still go out side
by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

# The dispatcher's pause per unit of its own work while webhooks are in flight.
YIELD_FACTOR: Final = 3.0
# No single pause is longer than this, so a slow send does not stall deliveries.
MAX_PAUSE: Final = 0.05


class WebhookLoad:
    """How many webhooks are being accepted at this moment (shared across config reloads)."""

    def __init__(self) -> None:
        self.in_flight = 0

    @contextmanager
    def accepting(self) -> Iterator[None]:
        """Count one webhook in flight for the duration of the block."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def give_way(self, worked: float) -> None:
        """After ``worked`` seconds of delivery work: pause if webhooks wait, else carry on."""
        if self.in_flight:
            await asyncio.sleep(min(MAX_PAUSE, worked * YIELD_FACTOR))
