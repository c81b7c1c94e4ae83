"""The Jinja environment: loaders, strictness, and filters bound to the render context.

``language`` and ``now`` differ per render (receivers choose the language;
``now`` is when the notification was accepted), so the filters that need them
read them from the template context instead of closing over them. The time
zone is fixed per service and is bound once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateRuntimeError,
    pass_context,
)
from jinja2.runtime import Context

from alertbridge.render import filters
from alertbridge.render.sanitize import safe_url

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def builtin_templates_dir() -> Path | None:
    """Where the default templates are: in the package (wheel) or the repo root (checkout).

    The wheel force-includes the repo's ``templates/`` as
    ``alertbridge/templates``; an editable install or a plain checkout only
    has the repo-root copy.
    """
    for candidate in (_PACKAGE_DIR / "templates", _PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    return None


def template_loaders(templates_dir: Path | None) -> list[BaseLoader]:
    """The operator's directory first, so its files override the built-ins."""
    loaders: list[BaseLoader] = []
    if templates_dir is not None:
        loaders.append(FileSystemLoader(templates_dir))
    builtin = builtin_templates_dir()
    if builtin is not None:
        loaders.append(FileSystemLoader(builtin))
    return loaders


def build_environment(loaders: list[BaseLoader], tz: tzinfo) -> Environment:
    """Strict, unescaped (WeCom content is not HTML), whitespace-trimmed."""
    env = Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - WeCom messages are not HTML; md_escape guards markdown
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def localtime(value: datetime | None, fmt: str = filters.DEFAULT_TIME_FORMAT) -> str:
        return filters.localtime(value, tz, fmt)

    env.tests["known_time"] = filters.known_time
    env.filters.update(
        {
            "localtime": localtime,
            "since": _since,
            "humanize_duration": _humanize_duration,
            "only": filters.only,
            "without": filters.without,
            "oneline": filters.oneline,
            "md_escape": filters.md_escape,
            "md_url": filters.md_url,
            "safe_url": safe_url,
            "text_escape": filters.text_escape,
            "silence_url": filters.silence_url,
            "group_silence_url": filters.group_silence_url,
            "group_title": filters.group_title,
            "alert_title": filters.alert_title,
            "shared_labels": filters.shared_labels,
            "distinct_labels": filters.distinct_labels,
            "grafana_message": filters.grafana_message,
        }
    )
    return env


def _from_context(ctx: Context, name: str) -> Any:
    value = ctx.get(name)
    if value is None:
        # A macro file imported without "with context" has no render variables.
        raise TemplateRuntimeError(f"this filter needs {name!r}; import macros 'with context'")
    return value


@pass_context
def _since(ctx: Context, start: datetime | None, end: datetime | None = None) -> str:
    """``start | since`` → time until now; ``start | since(end)`` → time until end."""
    until = end if end is not None else _from_context(ctx, "now")
    return filters.since(start, until, _from_context(ctx, "language"))


@pass_context
def _humanize_duration(ctx: Context, delta: timedelta) -> str:
    return filters.humanize_duration(delta, _from_context(ctx, "language"))
