"""How command replies are worded: one language per reply, and silencer
failures said in that language.

A reply about an alert is in its receiver's language (``Config.language_of``);
the English detail of a ``SilencerError`` (URLs, Alertmanager's own reason)
goes to the log, and the user reads one short sentence in their language
chosen by the failure's kind.
"""

from __future__ import annotations

from datetime import datetime

from alertbridge.config import Config
from alertbridge.config_base import Language
from alertbridge.silencers import SilencerError, SilencerFailure

REPLY_LIMIT = 2048  # bytes of an app text message


def pick(language: Language, zh: str, en: str) -> str:
    return zh if language == "zh" else en


def short_time(config: Config, moment: datetime) -> str:
    """A moment as replies show it: month, day and minute in ``[server] timezone``."""
    return f"{moment.astimezone(config.server.tz):%m-%d %H:%M}"


_FAILURES: dict[SilencerFailure, tuple[str, str]] = {
    SilencerFailure.UNREACHABLE: (
        "{product} 无法连接，请稍后重试",
        "{product} is unreachable; try again later",
    ),
    SilencerFailure.CREDENTIALS: (
        "{product} 拒绝了 alertbridge 的凭据，请管理员检查静默器（silencers）的认证配置",
        "{product} refused alertbridge's credentials; an admin should check the silencer's credentials",
    ),
    SilencerFailure.REFUSED: ("{product} 拒绝了该请求", "{product} refused the request"),
    SilencerFailure.SERVER_ERROR: ("{product} 内部出错，请稍后重试", "{product} failed; try again later"),
    SilencerFailure.BAD_ANSWER: ("{product} 返回了无法识别的应答", "{product} gave an unexpected answer"),
    SilencerFailure.INVALID: (
        "这些告警没有可用于静默的共同标签",
        "these alerts share no label a silence could match on",
    ),
}


def silencer_failure(language: Language, error: SilencerError) -> str:
    """One short sentence for the user (details are logged, not shown)."""
    zh, en = _FAILURES[error.kind]
    product = error.product or pick(language, "静默器", "the silencer")
    return pick(language, zh, en).format(product=product)


def fit_lines(lines: list[str], more: str, limit: int = REPLY_LIMIT) -> str:
    """Join lines, dropping the tail with a "… N more" line so the reply fits one message."""
    text = "\n".join(lines)
    if len(text.encode()) <= limit:
        return text
    kept = list(lines)
    while kept:
        dropped = len(lines) - len(kept)
        candidate = "\n".join([*kept, more.format(n=dropped)]) if dropped else "\n".join(kept)
        if len(candidate.encode()) <= limit:
            return candidate
        kept.pop()
    return more.format(n=len(lines))[:limit]
