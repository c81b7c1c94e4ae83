"""The command language: every form in both languages, every refusal with
the exact one-line reply, and button keys."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbridge.commands import (
    Ack,
    Command,
    CommandError,
    Help,
    ListAlerts,
    ListSilences,
    Silence,
    Unsilence,
)
from alertbridge.commands.parser import button_key, help_text, parse_button_key, parse_command

MAX = timedelta(days=7)
H = timedelta(hours=1)
SID = "92bef783-39af-4ce7-b212-c4f990aa045a"
FW = "\u3000"  # 全角空格, what a Chinese input method types


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ack / 确认
        ("ack", Ack(None)),
        ("ack 27", Ack(27)),
        ("ACK 27", Ack(27)),
        ("Ack #27", Ack(27)),
        ("  ack    27  ", Ack(27)),
        ("ack\t27\n", Ack(27)),
        ("确认", Ack(None)),
        ("确认 27", Ack(27)),
        ("确认 #27", Ack(27)),
        (f"{FW}确认{FW}{FW}27{FW}", Ack(27)),
        ("确认 ２７", Ack(27)),  # 全角数字
        ("确认 ＃２７", Ack(27)),  # 全角井号
        ("确认27", Ack(27)),  # Chinese written without a space
        ("确认#27", Ack(27)),
        ("ＡＣＫ 27", Ack(27)),  # full-width letters
        # silence / 静默
        ("silence 27 2h", Silence(27, 2 * H)),
        ("SILENCE #27 30m", Silence(27, timedelta(minutes=30))),
        ("silence 27 1d", Silence(27, 24 * H)),
        ("silence 27 1h30m", Silence(27, timedelta(minutes=90))),
        ("silence 27 2H", Silence(27, 2 * H)),
        ("silence 27 2h deploying the fix", Silence(27, 2 * H, "deploying the fix")),
        ("silence  27   2h   two  spaces kept  ", Silence(27, 2 * H, "two  spaces kept")),
        ("静默 27 2h", Silence(27, 2 * H)),
        ("静默 #27 2h 正在处理", Silence(27, 2 * H, "正在处理")),
        (f"静默{FW}27{FW}2h{FW}数据库 迁移，稍后恢复", Silence(27, 2 * H, "数据库 迁移，稍后恢复")),
        ("静默 ２７ ２ｈ", Silence(27, 2 * H)),
        ("静默27 2h", Silence(27, 2 * H)),
        ("静默 27 2小时", Silence(27, 2 * H)),
        ("静默 27 30分钟", Silence(27, timedelta(minutes=30))),
        ("静默 27 1天", Silence(27, 24 * H)),
        ("静默 27 1小时30分", Silence(27, timedelta(minutes=90))),
        ("静默 27 7d", Silence(27, MAX)),  # exactly the maximum is allowed
        # unsilence / 取消静默
        ("unsilence 27", Unsilence(ref=27)),
        ("Unsilence #27", Unsilence(ref=27)),
        (f"unsilence {SID}", Unsilence(silence_id=SID)),
        (f"unsilence {SID.upper()}", Unsilence(silence_id=SID)),
        ("取消静默 27", Unsilence(ref=27)),
        ("取消静默 ＃２７", Unsilence(ref=27)),
        ("取消静默#27", Unsilence(ref=27)),
        (f"取消静默{FW}{SID}", Unsilence(silence_id=SID)),
        # alerts / silences / help
        ("alerts", ListAlerts()),
        ("Alerts  ", ListAlerts()),
        ("告警", ListAlerts()),
        ("silences", ListSilences()),
        ("静默列表", ListSilences()),
        (f"{FW}静默列表{FW}", ListSilences()),
        ("help", Help()),
        ("HELP", Help()),
        ("帮助", Help()),
        ("?", Help()),
        ("？", Help()),
        ("help silence", Help()),
    ],
)
def test_parses(text: str, expected: Command) -> None:
    assert parse_command(text, max_silence=MAX) == expected


SILENCE_USAGE_ZH = "用法：静默 <编号> <时长> [备注]，例如：静默 27 2h"
SILENCE_USAGE_EN = "usage: silence <ref> <duration> [comment], e.g. silence 27 2h"
UNKNOWN_ZH = "可用：确认、静默、取消静默、告警、静默列表、帮助"
UNKNOWN_EN = "try: ack, silence, unsilence, alerts, silences, help"


@pytest.mark.parametrize(
    ("text", "reason", "zh", "en"),
    [
        (
            "hello",
            "unknown_command",
            f"未知命令“hello”，{UNKNOWN_ZH}",
            f'unknown command "hello"; {UNKNOWN_EN}',
        ),
        (
            "你好 27",
            "unknown_command",
            f"未知命令“你好”，{UNKNOWN_ZH}",
            f'unknown command "你好"; {UNKNOWN_EN}',
        ),
        (
            "acknowledge 27",
            "unknown_command",
            f"未知命令“acknowledge”，{UNKNOWN_ZH}",
            f'unknown command "acknowledge"; {UNKNOWN_EN}',
        ),
        (
            "x" * 50,
            "unknown_command",
            f"未知命令“{'x' * 19}…”，{UNKNOWN_ZH}",
            f'unknown command "{"x" * 19}…"; {UNKNOWN_EN}',
        ),
        (
            "",
            "unknown_command",
            "请发送命令，例如：确认 27；发送“帮助”查看全部命令",
            "send a command, e.g. ack 27; send help to see them all",
        ),
        (
            f"{FW} ",
            "unknown_command",
            "请发送命令，例如：确认 27；发送“帮助”查看全部命令",
            "send a command, e.g. ack 27; send help to see them all",
        ),
        (
            "ack abc",
            "bad_reference",
            "编号“abc”无效，应为数字，如 27 或 #27。用法：确认 [编号]，例如：确认 27",
            'invalid reference "abc": a number such as 27 or #27; usage: ack [ref], e.g. ack 27',
        ),
        (
            "ack 0",
            "bad_reference",
            "编号“0”无效，应为数字，如 27 或 #27。用法：确认 [编号]，例如：确认 27",
            'invalid reference "0": a number such as 27 or #27; usage: ack [ref], e.g. ack 27',
        ),
        (
            "确认 27 28",
            "too_many_arguments",
            "只能确认一个编号。用法：确认 [编号]，例如：确认 27",
            "one reference at a time; usage: ack [ref], e.g. ack 27",
        ),
        (
            "silence",
            "missing_argument",
            f"缺少编号和时长。{SILENCE_USAGE_ZH}",
            f"missing reference and duration; {SILENCE_USAGE_EN}",
        ),
        (
            "静默 27",
            "missing_argument",
            f"缺少时长。{SILENCE_USAGE_ZH}",
            f"missing duration; {SILENCE_USAGE_EN}",
        ),
        (
            "静默 2h",
            "bad_reference",
            f"编号“2h”无效，应为数字，如 27 或 #27。{SILENCE_USAGE_ZH}",
            f'invalid reference "2h": a number such as 27 or #27; {SILENCE_USAGE_EN}',
        ),
        (
            "silence 27 soon",
            "bad_duration",
            f"时长“soon”无效，可写 30m、2h、1d、1h30m。{SILENCE_USAGE_ZH}",
            f'invalid duration "soon" (write 30m, 2h, 1d, 1h30m); {SILENCE_USAGE_EN}',
        ),
        (
            "silence 27 2x",
            "bad_duration",
            f"时长“2x”无效，可写 30m、2h、1d、1h30m。{SILENCE_USAGE_ZH}",
            f'invalid duration "2x" (write 30m, 2h, 1d, 1h30m); {SILENCE_USAGE_EN}',
        ),
        (
            "静默 27 0m",
            "bad_duration",
            f"时长必须大于 0。{SILENCE_USAGE_ZH}",
            f"duration must be more than 0; {SILENCE_USAGE_EN}",
        ),
        (
            "静默 27 8d",
            "duration_too_long",
            f"静默最长 7天。{SILENCE_USAGE_ZH}",
            f"silences last at most 7d; {SILENCE_USAGE_EN}",
        ),
        (
            "silence 27 7d1s 一秒也不行",
            "duration_too_long",
            f"静默最长 7天。{SILENCE_USAGE_ZH}",
            f"silences last at most 7d; {SILENCE_USAGE_EN}",
        ),
        # More than timedelta (or a float) can hold: the limit, not an OverflowError
        # that left the user without a reply.
        (
            "silence 12 99999999999999999999d",
            "duration_too_long",
            f"静默最长 7天。{SILENCE_USAGE_ZH}",
            f"silences last at most 7d; {SILENCE_USAGE_EN}",
        ),
        (
            "静默 12 " + "9" * 400 + "秒",
            "duration_too_long",
            f"静默最长 7天。{SILENCE_USAGE_ZH}",
            f"silences last at most 7d; {SILENCE_USAGE_EN}",
        ),
        (
            "unsilence",
            "missing_argument",
            "缺少编号或静默ID。用法：取消静默 <编号或静默ID>，例如：取消静默 27",
            "missing reference or silence id; usage: unsilence <ref or silence id>, e.g. unsilence 27",
        ),
        (
            "取消静默 abc",
            "bad_reference",
            "“abc”既不是编号（如 27）也不是静默ID。用法：取消静默 <编号或静默ID>，例如：取消静默 27",
            '"abc" is neither a reference (such as 27) nor a silence id; '
            "usage: unsilence <ref or silence id>, e.g. unsilence 27",
        ),
        (
            "unsilence 27 28",
            "too_many_arguments",
            "一次只能取消一个。用法：取消静默 <编号或静默ID>，例如：取消静默 27",
            "one at a time; usage: unsilence <ref or silence id>, e.g. unsilence 27",
        ),
        ("告警 27", "too_many_arguments", "不需要参数。用法：告警", "takes no arguments; usage: alerts"),
        (
            "silences all",
            "too_many_arguments",
            "不需要参数。用法：静默列表",
            "takes no arguments; usage: silences",
        ),
    ],
)
def test_refuses_with_one_line(text: str, reason: str, zh: str, en: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text, max_silence=MAX)
    error = caught.value
    assert (error.reason, error.message_zh, error.message_en) == (reason, zh, en)
    assert error.unknown_command == (reason == "unknown_command")
    assert error.message("zh") == zh and error.message("en") == en and str(error) == en
    assert "\n" not in zh and "\n" not in en


def test_max_silence_is_a_parameter() -> None:
    assert parse_command("silence 27 2h", max_silence=timedelta(hours=2)) == Silence(27, 2 * H)
    with pytest.raises(CommandError) as caught:
        parse_command("silence 27 3h", max_silence=timedelta(hours=2))
    assert caught.value.message_en.startswith("silences last at most 2h;")


@given(st.text(max_size=80))
def test_any_text_is_a_command_or_a_command_error(text: str) -> None:
    try:
        parse_command(text, max_silence=MAX)
    except CommandError as error:
        assert "\n" not in error.message_zh and "\n" not in error.message_en


def test_help_text_lists_every_command() -> None:
    assert all(word in help_text("zh") for word in ("确认", "静默", "取消静默", "告警", "静默列表"))
    assert all(word in help_text("en") for word in ("ack", "silence", "unsilence", "alerts", "silences"))


# --- button keys ---------------------------------------------------------

BUTTON_CHARS = re.compile(r"[A-Za-z0-9:_-]{1,1024}")

refs = st.integers(min_value=1, max_value=10**12 - 1)
uuids = st.uuids().map(str)
button_commands = st.one_of(
    refs.map(Ack),
    st.builds(Silence, refs, st.integers(min_value=1, max_value=10**9).map(lambda s: timedelta(seconds=s))),
    refs.map(lambda r: Unsilence(ref=r)),
    uuids.map(lambda u: Unsilence(silence_id=u)),
    st.just(ListAlerts()),
    st.just(ListSilences()),
    st.just(Help()),
)


@given(button_commands)
def test_button_key_round_trip(command: Command) -> None:
    key = button_key(command)
    assert BUTTON_CHARS.fullmatch(key) and len(key.encode()) <= 1024
    assert parse_button_key(key) == command


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (Ack(27), "ack:27"),
        (Silence(27, H), "silence:27:3600"),
        (Silence(27, H, "comments are not carried"), "silence:27:3600"),
        (Unsilence(ref=27), "unsilence:27"),
        (Unsilence(silence_id=SID), f"unsilence:{SID}"),
    ],
)
def test_button_keys(command: Command, key: str) -> None:
    assert button_key(command) == key


@pytest.mark.parametrize(
    "command", [Ack(None), Silence(27, timedelta(seconds=1.5)), Silence(27, timedelta(0))]
)
def test_commands_without_a_button(command: Command) -> None:
    with pytest.raises(ValueError):
        button_key(command)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ack",
        "ack:",
        "ack:0",
        "ack:027",
        "ack:x",
        "ack:27:1",
        "silence:27",
        "silence:27:0",
        "silence:27:1h",
        "unsilence:not-a-uuid",
        "ack:２７",
        "ack 27",
        "ack:27;drop",
        "nuke:27",
        "x" * 1025,
    ],
)
def test_foreign_button_keys_are_refused(key: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_button_key(key)
    assert caught.value.reason == "bad_button"


def test_button_silence_bounded_by_max_silence() -> None:
    assert parse_button_key("silence:27:3600", max_silence=H) == Silence(27, H)
    with pytest.raises(CommandError) as caught:
        parse_button_key("silence:27:3601", max_silence=H)
    assert caught.value.reason == "duration_too_long"
