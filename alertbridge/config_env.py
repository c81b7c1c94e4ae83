"""``${VAR}`` / ``${VAR:-default}`` in config strings, and the key paths problems are reported under.

Split from ``alertbridge.config`` so that module holds the sections alone.
The environment is passed in (``load_config(path, environ)``); nothing here reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from alertbridge.config_base import NAME

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def substitute(
    value: Any, environ: Mapping[str, str], path: tuple[str | int, ...], problems: list[tuple[str, str]]
) -> Any:
    """``value`` with every ``${VAR}`` in its strings replaced; unset variables
    without a default are added to ``problems`` as (key path, reason)."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            problems.append((dotted(path), f"environment variable {name} is not set"))
            return ""

        return _ENV_REF.sub(replace, value)
    if isinstance(value, dict):
        return {k: substitute(v, environ, (*path, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, environ, (*path, i), problems) for i, v in enumerate(value)]
    return value


def dotted(path: tuple[str | int, ...]) -> str:
    """A key path as the config file spells it: ``receivers."a b".to_user[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if NAME.match(part) and "." not in part else f'"{part}"'
            out += f".{text}" if out else text
    return out
