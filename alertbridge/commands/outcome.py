"""What a command did, as data: the result kind (an enum, never read back
from the reply's wording), the reply, and why it failed or was refused."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CommandResult(StrEnum):
    """How a command ended, for the audit trail, the log line and metrics."""

    OK = "ok"
    FAILED = "failed"  # could not be done (no such ref, silencer down …)
    REFUSED = "refused"  # the user may not do it


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the reply for the user, and for a card button the
    label that replaces the buttons (None: leave the card as it is).
    ``reason`` is a short fixed word saying why it failed or was refused."""

    reply: str
    card_label: str | None = None
    result: CommandResult = CommandResult.OK
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.result is CommandResult.OK


def failed(reply: str, reason: str) -> Outcome:
    """A command that could not be done; ``reason`` is its fixed word."""
    return Outcome(reply, result=CommandResult.FAILED, reason=reason)
