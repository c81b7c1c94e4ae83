"""The console messenger: prints messages instead of sending them.

For trials and ``check-config``-style dry runs: what is printed is exactly
the content WeCom would get, with its byte count against the limit.
"""

from __future__ import annotations

from typing import Final, Literal, TextIO

from alertbridge.config_base import ReceiverBase
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Messenger, Receipt

# The console stands in for a WeCom app during trials; keep the app's limits
# so what a user sees there is what WeCom would show.
CONSOLE_BYTE_LIMITS: Final = {("console", "text"): 2048, ("console", "markdown"): 2048}


class ConsoleReceiver(ReceiverBase):
    channel: Literal["console"]

    @property
    def audience(self) -> tuple[str, str]:
        return "控制台", "the console"


class ConsoleMessenger(Messenger):
    """Nothing of its own: rendered by the template, no mentions, no limits."""

    kinds = ("console",)
    byte_limits = CONSOLE_BYTE_LIMITS


_RULE = "=" * 72


def format_block(receiver: str, message: RenderedMessage) -> str:
    """One delimited block: a header line, the content (trailing newlines trimmed), a closing rule."""
    header = (
        f"===== receiver={receiver} msgtype={message.msgtype} part={message.part}/{message.parts} "
        f"bytes={message.byte_count}/{message.limit} ====="
    )
    lines = [header, message.content.rstrip("\n"), _RULE]
    return "\n".join(lines) + "\n"


class ConsoleChannel:
    kind = "console"
    duplicate_check = None

    def __init__(self, out: TextIO, receiver: str = "console") -> None:
        self._out = out
        self._receiver = receiver

    def __repr__(self) -> str:
        return f"<ConsoleChannel receiver={self._receiver!r}>"

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        del recipients  # console receivers have none
        self._out.write(format_block(self._receiver, message))
        self._out.flush()
        return Receipt()
