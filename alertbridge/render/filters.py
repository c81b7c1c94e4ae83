"""Template filters as pure functions.

Everything a template needs that Jinja's built-ins do not cover. They take
all their inputs as arguments (time zone, language, ``now``) so they are
trivially testable; ``environment.py`` binds them to the per-render context.
Label helpers return sorted pairs so output never depends on dict order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from urllib.parse import quote

from alertbridge.duration import format_duration
from alertbridge.model import Alert, AlertGroup
from alertbridge.render.sanitize import safe_url

DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Times outside this range are placeholders (Go's zero time 0001-01-01, a
# "never" of 9999-12-31) or nonsense: shown as unknown, never converted (a
# time zone shift past year 1 or 9999 raises OverflowError) and never used
# for a duration ("firing for 739954 days").
EARLIEST_TIME = datetime(1970, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
UNKNOWN_TIME = "—"
# A group's silence link longer than this is left out (see group_silence_url).
GROUP_SILENCE_URL_BYTES = 640

# What WeCom's markdown subset treats as markup mid-line: bold (*), inline
# code (`), links ([text](url)) and tags (<font>, <@userid>). Line-start
# markup (#, >) cannot occur once line breaks are folded; underscores are not
# markup there. WeCom documents no escape character (a backslash may show
# literally), and a zero-width space after the character — the earlier
# stopgap — leaves invisible junk in copied text and breaks search. Each is
# replaced by its full-width look-alike instead: it reads the same, never
# parses as markup, and shows that the value was not formatting.
MD_LOOKALIKES = str.maketrans({"`": "\uff40", "*": "\uff0a", "[": "\uff3b", "]": "\uff3d", "<": "\uff1c"})
# WeCom text messages render <a href="…">…</a> as a link (and nothing else as
# markup): a value's "<" becomes "＜" so no tag can form.
TEXT_LOOKALIKES = str.maketrans({"<": "\uff1c"})
# A run of line breaks (everything a client may break a line at, not only
# \n) with the indentation after it. No leading quantifier: that would make
# a long run of spaces quadratic to scan.
_LINE_BREAKS = re.compile("[\r\n\v\f\x85\u2028\u2029][ \t\r\n\v\f\x85\u2028\u2029]*")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _aware(moment: datetime) -> datetime:
    # The model's datetimes are aware; a naive one can only be UTC from a
    # hand-written payload, never local time.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def known_time(value: datetime | None) -> bool:
    """Is ``value`` a real moment (not absent, Go's zero time or year 9999)?"""
    # Comparing aware datetimes works on any offset; converting them may overflow.
    return value is not None and EARLIEST_TIME <= _aware(value) <= LATEST_TIME


def localtime(value: datetime | None, tz: tzinfo, fmt: str = DEFAULT_TIME_FORMAT) -> str:
    """``value`` as wall-clock time in ``tz``: ``2026-11-29 20:08:44``; ``—`` when not ``known_time``."""
    if value is None or not known_time(value):
        return UNKNOWN_TIME
    return _aware(value).astimezone(tz).strftime(fmt)


def humanize_duration(delta: timedelta, language: str) -> str:
    """``3小时5分`` / ``3h 5m``: at most two units, never negative."""
    return format_duration(delta, language)


def since(start: datetime | None, end: datetime | None, language: str) -> str:
    """How long from ``start`` to ``end`` (``now`` for a firing alert); ``—`` unless both are known."""
    if start is None or end is None or not (known_time(start) and known_time(end)):
        return UNKNOWN_TIME
    return format_duration(_aware(end) - _aware(start), language)


def only(labels: Mapping[str, str], *names: str) -> list[tuple[str, str]]:
    """The pairs of ``labels`` named in ``names``, sorted by name."""
    wanted = set(names)
    return sorted((k, v) for k, v in labels.items() if k in wanted)


def without(labels: Mapping[str, str], *names: str) -> list[tuple[str, str]]:
    """The pairs of ``labels`` not named in ``names``, sorted by name."""
    unwanted = set(names)
    return sorted((k, v) for k, v in labels.items() if k not in unwanted)


def oneline(value: object) -> str:
    """``value`` with its line breaks folded into spaces, for titles and first lines."""
    return _LINE_BREAKS.sub(" ", str(value))


def md_escape(value: object) -> str:
    """``value`` as literal text inside a WeCom markdown line.

    Line breaks become a space (a value must not start a heading or quote, or
    end the quote block it sits in) and every markup character becomes its
    full-width look-alike (``MD_LOOKALIKES``: ``*`` → ``＊``, ``[`` → ``［``,
    ``<`` → ``＜`` …), so a label like ``**x** [c](d) <font>`` or ``<@userid>``
    cannot change the layout or mention anyone, yet reads the same.
    """
    return oneline(value).translate(MD_LOOKALIKES)


def text_escape(value: object) -> str:
    """``value`` safe in a WeCom text message: no ``<a href>`` link can form (``TEXT_LOOKALIKES``)."""
    return str(value).translate(TEXT_LOOKALIKES)


def md_url(url: str) -> str:
    """``url`` safe as the target of a markdown link ``[text](url)``, or ``""``.

    Only absolute http(s) URLs are kept; spaces, line breaks, parentheses and
    other markup characters are percent-encoded (``sanitize.safe_url``).
    """
    return safe_url(url)


# What a default message calls the alerting thing (its "target"), in order.
TARGET_KEYS = ("instance", "pod", "node", "host", "hostname", "service", "job")
# Labels every message shows in its own place, never among "other labels".
_SHOWN_ELSEWHERE = frozenset({"alertname", "severity"})
_MAX_SHARED_LABELS = 6
_MAX_DISTINCT_LABELS = 4
_LABEL_VALUE_CHARS = 64
# Grafana's default notification title and message (webhook v1): the
# status in brackets, then the labels; a "**Firing**" / "**Resolved**" list.
_GRAFANA_DEFAULT_TITLE = re.compile(r"^\[(FIRING|RESOLVED|Alerting|OK|No Data|Pending|Paused)\b[^\]]*\]\s*")
_GRAFANA_DEFAULT_MESSAGE = re.compile(r"^\s*\*\*(Firing|Resolved)\*\*")


def target_key(labels: Mapping[str, str]) -> str | None:
    """The first of ``TARGET_KEYS`` with a value: the label a message shows as the target."""
    return next((key for key in TARGET_KEYS if labels.get(key)), None)


def _listed(key: str) -> bool:
    return key not in _SHOWN_ELSEWHERE and not key.startswith("__")


def _pairs(pairs: list[tuple[str, str]], cap: int) -> str:
    shown = [f"{k}={_clip(v, _LABEL_VALUE_CHARS)}" for k, v in pairs[:cap]]
    more = f" +{len(pairs) - cap}" if len(pairs) > cap else ""
    return ", ".join(shown) + more


def _clip(value: str, chars: int) -> str:
    value = oneline(value)
    return value if len(value) <= chars else value[: chars - 1] + "…"


def shared_labels(group: AlertGroup) -> str:
    """``job=node, team=支付``: the labels all alerts share that no other line
    shows (not alertname, severity, a target, ``__internal`` ones), capped."""
    targets = {target_key(a.labels) for a in group.alerts}
    pairs = [(k, v) for k, v in sorted(group.common_labels.items()) if _listed(k) and k not in targets and v]
    return _pairs(pairs, _MAX_SHARED_LABELS)


def distinct_labels(alert: Alert, group: AlertGroup) -> str:
    """The labels that set ``alert`` apart from the rest of its group (not
    common, not its target or name), capped: ``mountpoint=/data, device=sdb``."""
    target = target_key(alert.labels)
    pairs = [
        (k, v)
        for k, v in sorted(alert.labels.items())
        if _listed(k) and k != target and v and group.common_labels.get(k) != v
    ]
    return _pairs(pairs, _MAX_DISTINCT_LABELS)


def grafana_title(group: AlertGroup) -> str:
    """The Grafana contact point's ``title`` when the operator customised it, else ``""``."""
    if group.source != "grafana" or not group.title.strip() or _GRAFANA_DEFAULT_TITLE.match(group.title):
        return ""
    return group.title


def grafana_message(group: AlertGroup) -> str:
    """The Grafana contact point's ``message`` when the operator customised it, else ``""``.

    Legacy Grafana's message is the rule's own and already shown per alert.
    """
    if group.source != "grafana" or group.legacy or _GRAFANA_DEFAULT_MESSAGE.match(group.message):
        return ""
    return group.message.strip()


def alert_title(alert: Alert) -> str:
    """An alert's name; without ``alertname``, its target or first label, else its fingerprint."""
    if alert.name:
        return alert.name
    key = target_key(alert.labels)
    if key is None:
        key = next((k for k in sorted(alert.labels) if _listed(k) and alert.labels[k]), None)
    return f"{key}={alert.labels[key]}" if key is not None else alert.fingerprint


def group_title(group: AlertGroup) -> str:
    """What a message calls the group, never empty.

    The operator's Grafana title; the common alertname; the grouping labels'
    values; the alerts' distinct names; Grafana's default title without its
    status; the labels the alerts share; the first alert's ``alert_title``.
    """
    names = list(dict.fromkeys(a.name for a in group.alerts if a.name))
    candidates = (
        grafana_title(group),
        group.common_labels.get("alertname", ""),
        " ".join(v for v in group.group_labels.values() if v),
        ", ".join(names),
        _GRAFANA_DEFAULT_TITLE.sub("", group.title) if group.source == "grafana" else "",
        shared_labels(group),
    )
    for candidate in candidates:
        if candidate.strip():
            return candidate
    return alert_title(group.alerts[0]) if group.alerts else "—"


def silence_matchers(labels: Mapping[str, str]) -> str:
    """``{k="v",…}`` matching exactly ``labels``, in Alertmanager's matcher syntax."""
    pairs = (f'{_matcher_name(k)}="{_matcher_value(v)}"' for k, v in sorted(labels.items()))
    return "{" + ",".join(pairs) + "}"


def silence_url(alert: Alert, group: AlertGroup) -> str:
    """A link to silence the alert in its source's UI.

    Grafana sends its own ``silenceURL``; for Alertmanager it is the "new
    silence" form pre-filled with the alert's labels. Empty when there is no
    such page (legacy Grafana, payloads without an external URL): a template
    should then leave the link out.
    """
    if group.source == "grafana":
        return safe_url(alert.silence_url)
    base = safe_url(group.external_url).rstrip("/")
    if not base:
        return ""
    return f"{base}/#/silences/new?filter={quote(silence_matchers(alert.labels), safe='')}"


def group_silence_url(group: AlertGroup) -> str:
    """One link to silence every firing alert of ``group``, or ``""``.

    A per-alert link is ~300 bytes of encoded matchers and halved how many
    alerts fit in a 2048-byte message; one per group costs that once. The
    matchers are the group's common labels (else its grouping labels), which
    every alert of the notification carries. Alertmanager: its "new silence"
    form. Grafana: the first firing alert's own silence form with its
    matchers replaced (a lone firing alert keeps Grafana's link as is).
    Empty when there is no such page or no label to match on.
    """
    url = _group_silence_url(group)
    # Huge label values would crowd the alerts out of the message: no link then.
    return url if len(url.encode("utf-8")) <= GROUP_SILENCE_URL_BYTES else ""


def _group_silence_url(group: AlertGroup) -> str:
    firing = group.firing
    if not firing:
        return ""
    labels = group.common_labels or group.group_labels
    if group.source == "grafana":
        if len(firing) == 1:
            return safe_url(firing[0].silence_url)
        base = safe_url(firing[0].silence_url)
        if not base or not labels:
            return ""
        url, _, query = base.partition("?")
        kept = [p for p in query.split("&") if p and not p.startswith("matcher=")]
        matchers = [f"matcher={quote(f'{k}={v}', safe='')}" for k, v in sorted(labels.items())]
        return f"{url}?{'&'.join([*kept, *matchers])}"
    base = safe_url(group.external_url).rstrip("/")
    if not base or not labels:
        return ""
    return f"{base}/#/silences/new?filter={quote(silence_matchers(labels), safe='')}"


def _matcher_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _matcher_name(name: str) -> str:
    # Classic label names go bare; anything else (UTF-8 names, Grafana) must
    # be quoted for Alertmanager >= 0.27 to parse the matcher.
    return name if _LABEL_NAME.match(name) else f'"{_matcher_value(name)}"'
