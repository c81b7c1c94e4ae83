"""Silencers: create and expire silences where the alerts come from.

One ``Silencer`` per ``[silencers.NAME]``: Alertmanager's API v2, or Grafana's
built-in Alertmanager (the same API under a prefix). Errors are ``SilencerError``
with a message fit to show the WeCom user who asked (no secrets, no stack).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from alertbridge.errors import AlertbridgeError


class SilencerFailure(StrEnum):
    """What kind of failure a ``SilencerError`` is: replies say it in the
    user's language from this, and logs carry it as the reason."""

    UNREACHABLE = "unreachable"  # no peer answered: nothing happened
    CREDENTIALS = "credentials_refused"  # 401/403
    REFUSED = "refused"  # another 4xx, with the silencer's reason
    SERVER_ERROR = "server_error"  # 5xx
    BAD_ANSWER = "bad_answer"  # an answer of the wrong shape
    INVALID = "invalid_matchers"  # refused before asking: the matchers would silence everything


class SilencerError(AlertbridgeError):
    """A silence operation failed; ``str()`` is the English detail (safe to
    log: no secrets), ``kind`` the typed failure and ``product`` who failed.

    ``unreachable`` distinguishes "no peer answered" (nothing happened) from
    "the silencer refused" (a 4xx with its reason).
    """

    def __init__(
        self,
        message: str,
        *,
        unreachable: bool = False,
        kind: SilencerFailure | None = None,
        product: str = "",
    ) -> None:
        self.unreachable = unreachable
        self.kind = (
            kind
            if kind is not None
            else (SilencerFailure.UNREACHABLE if unreachable else SilencerFailure.REFUSED)
        )
        self.product = product
        super().__init__(message)


class SilenceNotFoundError(SilencerError):
    """The silence to change does not exist (any more): the caller may create
    a new one instead, e.g. when extending an ack silence."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __str__(self) -> str:
        op = ("=~" if self.is_regex else "=") if self.is_equal else ("!~" if self.is_regex else "!=")
        return f'{self.name}{op}"{self.value}"'


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    state: str  # active | pending | expired


class Silencer(Protocol):
    name: str
    kind: str  # "alertmanager" | "grafana"

    async def create(self, request: SilenceRequest) -> str:
        """Create a silence; returns its id. Raises ``SilencerError``."""

    async def update(self, silence_id: str, request: SilenceRequest) -> str:
        """Change an existing silence (e.g. extend it); returns the id to keep,
        which may be new: Alertmanager replaces a silence whose matchers changed."""

    async def expire(self, silence_id: str) -> bool:
        """Expire a silence; False when it was already gone. Raises ``SilencerError``."""

    async def get(self, silence_id: str) -> Silence | None: ...

    async def list(self) -> list[Silence]: ...

    async def firing_alerts(
        self, matchers: Sequence[Matcher], *, silenced: bool = True, inhibited: bool = True
    ) -> builtins.list[dict[str, Any]]:
        """Alerts firing now that ``matchers`` select, silenced ones included."""

    def silence_url(self, silence_id: str) -> str:
        """A link to the silence in the silencer's UI, for replies."""


# The characters RE2 treats specially, and only those. Python's ``re.escape``
# also escapes space, ``-``, ``#``, ``&``, ``~`` for its own verbose mode and
# sets; the matcher is shown in Alertmanager's UI and in our replies, where
# ``web\-1`` reads worse than ``web-1``.
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")

# Kept when every shared label is volatile: the alert's name is stable.
_FALLBACK_LABEL = "alertname"


def re2_escape(value: str) -> str:
    """``value`` as an RE2 regex that matches exactly ``value``."""
    return _RE2_META.sub(r"\\\1", value)


def matchers_for(label_sets: Sequence[Mapping[str, str]], volatile: Collection[str]) -> tuple[Matcher, ...]:
    """Matchers that select exactly these alerts (and their recurrences).

    Labels with one value across all alerts become equality matchers; labels
    present in every alert with different values become an anchored regex of
    the escaped values; volatile labels and labels some alerts lack are left
    out. Sorted by name so the same group always yields the same matchers.

    An empty label value counts as absent, as it does in Prometheus. If every
    shared label is volatile, ``alertname`` is kept anyway (and failing that,
    the volatile labels): a silence on the exact pods beats one on nothing.
    The result is empty only when the alerts share no label at all.
    """
    if not label_sets:
        return ()
    shared = set.intersection(*({k for k, v in labels.items() if v} for labels in label_sets))
    names = sorted(shared - set(volatile))
    if not names:
        names = [_FALLBACK_LABEL] if _FALLBACK_LABEL in shared else sorted(shared)
    matchers = []
    for name in names:
        values = sorted({labels[name] for labels in label_sets})
        if len(values) == 1:
            matchers.append(Matcher(name, values[0]))
        else:
            matchers.append(Matcher(name, "|".join(re2_escape(v) for v in values), is_regex=True))
    return tuple(matchers)


def matches_empty(matcher: Matcher) -> bool:
    """Whether ``matcher`` matches an alert lacking the label (value "").

    Python's ``re`` stands in for RE2 here; for the regexes alertbridge builds
    (escaped alternatives) the two agree.

    Raises:
        SilencerError: the regex does not compile.
    """
    if matcher.is_regex:
        try:
            hit = re.fullmatch(matcher.value, "") is not None
        except re.error as exc:
            raise SilencerError(
                f"invalid regex in matcher {matcher}: {exc}", kind=SilencerFailure.INVALID
            ) from None
    else:
        hit = matcher.value == ""
    return hit if matcher.is_equal else not hit


def ensure_selective(matchers: Sequence[Matcher]) -> None:
    """Refuse matchers that would silence everything.

    Alertmanager rejects a silence unless some matcher does not match the
    empty string; checking first turns its 400 into a message that says why,
    and guards silencers that would not check at all.

    Raises:
        SilencerError: no matcher, or all of them match the empty string.
    """
    if not matchers:
        raise SilencerError("a silence needs at least one matcher", kind=SilencerFailure.INVALID)
    if all(matches_empty(m) for m in matchers):
        shown = ", ".join(str(m) for m in matchers)
        raise SilencerError(
            f"matchers {shown} would silence every alert; at least one must name a label value",
            kind=SilencerFailure.INVALID,
        )
