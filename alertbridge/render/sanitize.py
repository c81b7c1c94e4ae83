"""Making untrusted alert text safe to send: control characters and URLs.

Labels, annotations and URLs come from whoever can post to Alertmanager or
Grafana — often text pasted from logs. Two kinds of value break delivery or
mislead readers, so they are neutralised before any template sees them:

- **Control characters.** ``json.dumps`` writes C0 controls as ``\\u001b``
  escapes even with ``ensure_ascii=False``, and WeCom refuses any ``\\uXXXX``
  escape with errcode 40033 — the whole message, so one ANSI colour code
  would lose every alert it travels with. C0 controls (except ``\\n`` and
  ``\\t``) and DEL become their Unicode "control pictures" (``\\x1b`` → ``␛``,
  ``\\x00`` → ``␀``, DEL → ``␡``): visible, saying what was there, and plain
  printable characters to JSON. C1 controls (U+0080–U+009F) have no pictures
  and become U+FFFD ``�``. Carriage returns are line ends (``\\r\\n`` and a
  lone ``\\r`` become ``\\n``), not garbage.
- **URLs.** Only absolute ``http``/``https`` URLs are kept; anything else
  (``javascript:``, ``data:``, relative paths) becomes ``""`` so templates,
  which leave out empty links, never show it. Characters that would end a
  markdown link or start markup, and whitespace (a newline would start a new
  markdown line, where a ``<@user>`` mention pings people), are
  percent-encoded: they mean the same to any web server.

``clean_group`` applies both to a whole ``AlertGroup``; the renderer calls it
before every render (built-in and operator templates alike) and passes its
output through ``clean_text`` once more, for what a template adds itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from urllib.parse import quote, urlsplit

from alertbridge.model import Alert, AlertGroup

_NEWLINES = re.compile(r"\r\n?")
# C0 except \t (0x09) and \n (0x0a), DEL, C1.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_REPLACEMENT = "\ufffd"

# Percent-encoded in URLs: whitespace and controls, and what markdown or
# WeCom's text rendering would read as markup (<a>, [label](url), `code`).
_URL_UNSAFE = frozenset(' <>()[]"`\\{}|^')
_ALLOWED_SCHEMES = frozenset({"http", "https"})


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    return _REPLACEMENT


def clean_text(value: str) -> str:
    """``value`` with line ends normalised and control characters made visible (module docs)."""
    if not _CONTROL.search(value):
        return value
    return _CONTROL.sub(_picture, _NEWLINES.sub("\n", value))


def safe_url(value: str) -> str:
    """An absolute http(s) URL safe to put in text or a markdown link target, else ``""``.

    Leading and trailing whitespace is dropped (a trailing newline is common
    in YAML annotations); whitespace, controls and markup characters inside
    are percent-encoded (``%0A``, ``%20``, ``%3C`` …). ``%`` itself is kept,
    so an already encoded URL is unchanged.
    """
    url = value.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 host
        return ""
    if parts.scheme.lower() not in _ALLOWED_SCHEMES or not parts.netloc:
        return ""
    return "".join(quote(ch, safe="") if ch in _URL_UNSAFE or not ch.isprintable() else ch for ch in url)


def clean_labels(mapping: Mapping[str, str]) -> Mapping[str, str]:
    """``mapping`` with every key and value passed through ``clean_text``."""
    if not any(_CONTROL.search(k) or _CONTROL.search(v) for k, v in mapping.items()):
        return mapping
    return MappingProxyType({clean_text(k): clean_text(v) for k, v in mapping.items()})


def clean_alert(alert: Alert) -> Alert:
    """``alert`` with clean text and only safe URLs (its identity fields untouched)."""
    return replace(
        alert,
        labels=clean_labels(alert.labels),
        annotations=clean_labels(alert.annotations),
        value_string=clean_text(alert.value_string),
        generator_url=safe_url(alert.generator_url),
        image_url=safe_url(alert.image_url),
        dashboard_url=safe_url(alert.dashboard_url),
        panel_url=safe_url(alert.panel_url),
        silence_url=safe_url(alert.silence_url),
    )


def clean_group(group: AlertGroup) -> AlertGroup:
    """``group`` as templates may show it: every alert cleaned, URLs checked."""
    return replace(
        group,
        alerts=tuple(clean_alert(a) for a in group.alerts),
        group_labels=clean_labels(group.group_labels),
        common_labels=clean_labels(group.common_labels),
        common_annotations=clean_labels(group.common_annotations),
        external_url=safe_url(group.external_url),
        title=clean_text(group.title),
        message=clean_text(group.message),
    )
