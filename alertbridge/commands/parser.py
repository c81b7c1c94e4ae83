"""The command language, typed on a phone: pure functions, no I/O.

    ack [REF]                      确认 [编号]
    silence REF DURATION [comment] 静默 编号 时长 [备注]
    unsilence REF|SILENCE_ID       取消静默 编号|静默ID
    alerts                         告警
    silences                       静默列表
    help | ?                       帮助

Phones produce full-width spaces, digits and ``＃`` when the Chinese input
method is on, and capitalise the first letter, so the command word and the
arguments are compared after NFKC normalisation and case folding; the
comment is kept exactly as typed. A Chinese command word may be glued to
its reference (``确认27``), as people write Chinese without spaces.

Everything else raises ``CommandError`` with a one-line explanation that
shows the right form — the reply is all the documentation a user sees.

Card buttons carry the same commands as keys (``ack:27``,
``silence:27:3600``); see ``button_key`` and ``parse_button_key``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from alertbridge.commands import (
    Ack,
    Command,
    CommandError,
    CommandErrorReason,
    Help,
    ListAlerts,
    ListSilences,
    Silence,
    Unsilence,
)
from alertbridge.duration import format_duration, parse_duration

Verb = Literal["ack", "silence", "unsilence", "alerts", "silences", "help"]
# (arguments after the command word, max_silence) -> the command
_Parser = Callable[[str, timedelta], Command]

_VERBS: dict[str, Verb] = {
    "ack": "ack",
    "确认": "ack",
    "silence": "silence",
    "静默": "silence",
    "unsilence": "unsilence",
    "取消静默": "unsilence",
    "alerts": "alerts",
    "告警": "alerts",
    "silences": "silences",
    "静默列表": "silences",
    "help": "help",
    "帮助": "help",
    "?": "help",
}
# Chinese words that take an argument, longest first (静默 is a prefix of
# 静默列表, which takes none and so is never glued).
_GLUED = re.compile(r"^(取消静默|静默|确认)(?=[#\d])")

_USAGE: dict[Verb, tuple[str, str]] = {
    "ack": ("用法：确认 [编号]，例如：确认 27", "usage: ack [ref], e.g. ack 27"),
    "silence": (
        "用法：静默 <编号> <时长> [备注]，例如：静默 27 2h",
        "usage: silence <ref> <duration> [comment], e.g. silence 27 2h",
    ),
    "unsilence": (
        "用法：取消静默 <编号或静默ID>，例如：取消静默 27",
        "usage: unsilence <ref or silence id>, e.g. unsilence 27",
    ),
    "alerts": ("用法：告警", "usage: alerts"),
    "silences": ("用法：静默列表", "usage: silences"),
    "help": ("用法：帮助", "usage: help"),
}

_REF = re.compile(r"#?(\d{1,12})")
_SILENCE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Chinese units, replaced before parse_duration; 分钟 before 分.
_ZH_UNITS = (
    ("小时", "h"),
    ("小時", "h"),
    ("分钟", "m"),
    ("分鐘", "m"),
    ("分", "m"),
    ("秒", "s"),
    ("天", "d"),
    ("周", "w"),
)
_ECHO_MAX = 20  # characters of the user's input repeated in an error

_BUTTON_KEY = re.compile(r"[A-Za-z0-9:_-]{1,1024}")
BUTTON_KEY_MAX_BYTES = 1024


def parse_command(text: str, *, max_silence: timedelta) -> Command:
    """The command in a reply.

    Raises:
        CommandError: not a command, or a command with a bad argument; the
            messages say which and show the right form.
    """
    stripped = text.strip()
    if not stripped:
        raise CommandError(
            "请发送命令，例如：确认 27；发送“帮助”查看全部命令",
            "send a command, e.g. ack 27; send help to see them all",
            reason="unknown_command",
        )
    word, rest = _split_first(stripped)
    folded = _fold(word)
    verb = _VERBS.get(folded)
    if verb is None and (glued := _GLUED.match(folded)):
        verb = _VERBS[glued.group(1)]
        rest = f"{word[len(glued.group(1)) :]} {rest}"
    if verb is None:
        shown = word if len(word) <= _ECHO_MAX else word[: _ECHO_MAX - 1] + "…"
        raise CommandError(
            f"未知命令“{shown}”，可用：确认、静默、取消静默、告警、静默列表、帮助",
            f'unknown command "{shown}"; try: ack, silence, unsilence, alerts, silences, help',
            reason="unknown_command",
        )
    return _PARSERS[verb](rest.strip(), max_silence)


def _split_first(text: str) -> tuple[str, str]:
    """``(first word, the rest)``, splitting on any Unicode space
    (``str.split`` knows U+3000, the full-width one)."""
    parts = text.split(None, 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _parse_ack(args: str, max_silence: timedelta) -> Command:
    words = args.split()
    if len(words) > 1:
        raise _bad("ack", "too_many_arguments", "只能确认一个编号", "one reference at a time")
    return Ack(_ref("ack", words[0]) if words else None)


def _parse_silence(args: str, max_silence: timedelta) -> Command:
    words = args.split(None, 2)
    if not words:
        raise _bad("silence", "missing_argument", "缺少编号和时长", "missing reference and duration")
    ref = _ref("silence", words[0])
    if len(words) < 2:
        raise _bad("silence", "missing_argument", "缺少时长", "missing duration")
    duration = parse_silence_duration(words[1], max_silence)
    return Silence(ref, duration, words[2].strip() if len(words) > 2 else "")


def _parse_unsilence(args: str, max_silence: timedelta) -> Command:
    words = args.split()
    if not words:
        raise _bad("unsilence", "missing_argument", "缺少编号或静默ID", "missing reference or silence id")
    if len(words) > 1:
        raise _bad("unsilence", "too_many_arguments", "一次只能取消一个", "one at a time")
    target = _fold(words[0])
    if _SILENCE_ID.fullmatch(target):
        return Unsilence(silence_id=target)
    if _ref_number(target) is None:
        shown = _echo(words[0])
        raise _bad(
            "unsilence",
            "bad_reference",
            f"“{shown}”既不是编号（如 27）也不是静默ID",
            f'"{shown}" is neither a reference (such as 27) nor a silence id',
        )
    return Unsilence(ref=_ref("unsilence", words[0]))


def _no_arguments(verb: Verb, command: Command) -> _Parser:
    def parse(args: str, max_silence: timedelta) -> Command:
        if args:
            raise _bad(verb, "too_many_arguments", "不需要参数", "takes no arguments")
        return command

    return parse


def _parse_help(args: str, max_silence: timedelta) -> Command:
    # `help silence` is a fair question; the full help answers it.
    return Help()


def parse_silence_duration(text: str, max_silence: timedelta) -> timedelta:
    """``2h``, ``1h30m``, ``1d``, ``２小时``: more than zero, at most ``max_silence``.

    Raises:
        CommandError: with the ``silence`` usage.
    """
    folded = _fold(text)
    for zh, unit in _ZH_UNITS:
        folded = folded.replace(zh, unit)
    try:
        duration = parse_duration(folded)
    except ValueError:
        shown = _echo(text)
        raise _bad(
            "silence",
            "bad_duration",
            f"时长“{shown}”无效，可写 30m、2h、1d、1h30m",
            f'invalid duration "{shown}" (write 30m, 2h, 1d, 1h30m)',
        ) from None
    except OverflowError:
        # More than timedelta holds (about 2.7 million years): far over any limit.
        raise _too_long(max_silence) from None
    if duration <= timedelta(0):
        raise _bad("silence", "bad_duration", "时长必须大于 0", "duration must be more than 0")
    if duration > max_silence:
        raise _too_long(max_silence)
    return duration


def _too_long(max_silence: timedelta) -> CommandError:
    return _bad(
        "silence",
        "duration_too_long",
        f"静默最长 {format_duration(max_silence, 'zh')}",
        f"silences last at most {format_duration(max_silence, 'en')}",
    )


def _ref_number(folded: str) -> int | None:
    """``27`` or ``#27`` (folded) as a number; references start at 1."""
    match = _REF.fullmatch(folded)
    if match is None:
        return None
    number = int(match.group(1))
    return number if number > 0 else None


def _ref(verb: Verb, word: str) -> int:
    ref = _ref_number(_fold(word))
    if ref is None:
        shown = _echo(word)
        raise _bad(
            verb,
            "bad_reference",
            f"编号“{shown}”无效，应为数字，如 27 或 #27",
            f'invalid reference "{shown}": a number such as 27 or #27',
        )
    return ref


def _bad(verb: Verb, reason: CommandErrorReason, problem_zh: str, problem_en: str) -> CommandError:
    usage_zh, usage_en = _USAGE[verb]
    return CommandError(f"{problem_zh}。{usage_zh}", f"{problem_en}; {usage_en}", reason=reason)


def _fold(text: str) -> str:
    """Full-width to ASCII (``２７`` → ``27``, ``＃`` → ``#``), then caseless."""
    return unicodedata.normalize("NFKC", text).casefold()


def _echo(text: str) -> str:
    """The user's word, short and on one line, to repeat in an error."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= _ECHO_MAX else one_line[: _ECHO_MAX - 1] + "…"


def help_text(language: str) -> str:
    """The reply to ``help``: every command with an example."""
    if language == "zh":
        lines = [
            "可用命令（编号即告警消息里的 #数字）：",
            "确认 [编号] — 确认告警，不写编号则确认最近一条，例如：确认 27",
            "静默 <编号> <时长> [备注] — 例如：静默 27 2h 正在处理",
            "取消静默 <编号或静默ID> — 例如：取消静默 27",
            "告警 — 列出我收到的未恢复告警",
            "静默列表 — 列出生效中的静默",
            "时长写法：30m、2h、1d、1h30m",
        ]
    else:
        lines = [
            "Commands (a ref is the #number in an alert message):",
            "ack [ref] — acknowledge; without a ref, the latest alert, e.g. ack 27",
            "silence <ref> <duration> [comment] — e.g. silence 27 2h deploying fix",
            "unsilence <ref or silence id> — e.g. unsilence 27",
            "alerts — my firing alerts",
            "silences — active silences",
            "Durations: 30m, 2h, 1d, 1h30m",
        ]
    return "\n".join(lines)


# --- card buttons ---------------------------------------------------------


def button_key(command: Command) -> str:
    """The ``key`` of a card button that runs ``command``.

    WeCom allows 1024 bytes of ``[A-Za-z0-9:_-]``; a silence is encoded in
    whole seconds and without its comment (buttons have none).

    Raises:
        ValueError: the command cannot be a button (``Ack`` without a ref,
            a duration that is not whole seconds).
    """
    match command:
        case Ack(ref=None):
            raise ValueError("a button acks a specific reference")
        case Ack(ref=ref):
            key = f"ack:{ref}"
        case Silence(ref=ref, duration=duration):
            seconds = duration.total_seconds()
            if seconds <= 0 or seconds != int(seconds):
                raise ValueError(f"a button silences for whole seconds, not {duration}")
            key = f"silence:{ref}:{int(seconds)}"
        case Unsilence(ref=int() as ref):
            key = f"unsilence:{ref}"
        case Unsilence(silence_id=str() as silence_id):
            key = f"unsilence:{silence_id}"
        case ListAlerts():
            key = "alerts"
        case ListSilences():
            key = "silences"
        case Help():
            key = "help"
        case _:
            raise ValueError(f"no button for {command!r}")
    if not _BUTTON_KEY.fullmatch(key):
        raise ValueError(f"button key {key!r} has characters WeCom does not allow")
    return key


def parse_button_key(key: str, *, max_silence: timedelta | None = None) -> Command:
    """The command of a pressed card button.

    Keys come back from WeCom, so a key we did not make (an older version's,
    or forged) is refused like a bad reply. ``max_silence`` also bounds
    button silences when given.

    Raises:
        CommandError: with ``reason="bad_button"`` (or ``duration_too_long``).
    """
    parts = key.split(":") if _BUTTON_KEY.fullmatch(key) else []
    match parts:
        case ["ack", ref] if _is_number(ref):
            return Ack(int(ref))
        case ["silence", ref, seconds] if _is_number(ref) and _is_number(seconds):
            duration = timedelta(seconds=int(seconds))
            if max_silence is not None and duration > max_silence:
                raise _too_long(max_silence)
            return Silence(int(ref), duration)
        case ["unsilence", ref] if _is_number(ref):
            return Unsilence(ref=int(ref))
        case ["unsilence", silence_id] if _SILENCE_ID.fullmatch(silence_id):
            return Unsilence(silence_id=silence_id)
        case ["alerts"]:
            return ListAlerts()
        case ["silences"]:
            return ListSilences()
        case ["help"]:
            return Help()
    raise CommandError(
        "无法识别的按钮，请直接回复命令", "unknown button; reply with a command instead", reason="bad_button"
    )


def _is_number(text: str) -> bool:
    """ASCII digits, no leading zero: the one spelling ``button_key`` makes."""
    return text.isascii() and text.isdigit() and not text.startswith("0") and len(text) <= 12


_PARSERS: dict[Verb, _Parser] = {
    "ack": _parse_ack,
    "silence": _parse_silence,
    "unsilence": _parse_unsilence,
    "alerts": _no_arguments("alerts", ListAlerts()),
    "silences": _no_arguments("silences", ListSilences()),
    "help": _parse_help,
}
