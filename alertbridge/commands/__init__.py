"""Commands WeCom users send back: typed replies (``ack 27``, ``静默 27 2h``)
and card buttons, parsed into the values below by ``commands.parser``.

A command names alerts by their reference (``#27``, the number shown in the
message) — or by nothing, meaning the latest alert sent to the user. What a
command does (permissions, the silencer, the reply) is decided elsewhere;
these values carry only what the user said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from alertbridge.errors import AlertbridgeError


@dataclass(frozen=True, slots=True)
class Ack:
    """``ack [REF]``: I am on it. ``ref=None``: the latest alert sent to me."""

    ref: int | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """``silence REF DURATION [comment]``: mute these alerts for a while."""

    ref: int
    duration: timedelta
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Unsilence:
    """``unsilence TARGET``: expire the silences of a reference, or one
    silence by its id. Exactly one of ``ref`` and ``silence_id`` is set."""

    ref: int | None = None
    silence_id: str | None = None

    def __post_init__(self) -> None:
        if (self.ref is None) == (self.silence_id is None):
            raise ValueError("Unsilence needs exactly one of ref and silence_id")


@dataclass(frozen=True, slots=True)
class ListAlerts:
    """``alerts``: my firing alerts with their references."""


@dataclass(frozen=True, slots=True)
class ListSilences:
    """``silences``: the active silences alertbridge created."""


@dataclass(frozen=True, slots=True)
class Help:
    """``help``: how to write the commands."""


Command = Ack | Silence | Unsilence | ListAlerts | ListSilences | Help

# Why a command was refused; short fixed words, usable as metric labels.
CommandErrorReason = Literal[
    "unknown_command",  # the first word is no command
    "missing_argument",  # e.g. `silence` without a reference
    "too_many_arguments",  # e.g. `ack 27 28`: refuse rather than guess
    "bad_reference",  # not a number / #number (or silence id for unsilence)
    "bad_duration",  # not a duration, or zero
    "duration_too_long",  # above commands.max_silence
    "bad_button",  # a button key we did not make
]


class CommandError(AlertbridgeError):
    """A reply that is not a valid command.

    Carries the one-line explanation in both languages (the reply goes out in
    the receiver's language) and a ``reason``, so the caller can tell an
    unknown command (perhaps just chat: answer with the help) from a known
    command with a bad argument (answer with its usage).
    """

    def __init__(self, message_zh: str, message_en: str, *, reason: CommandErrorReason) -> None:
        self.message_zh = message_zh
        self.message_en = message_en
        self.reason: CommandErrorReason = reason
        super().__init__(message_en)

    @property
    def unknown_command(self) -> bool:
        return self.reason == "unknown_command"

    def message(self, language: str) -> str:
        return self.message_zh if language == "zh" else self.message_en
