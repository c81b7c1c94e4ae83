"""The app menu: ``menu_commands`` in an app's config and the ``menu/create`` body made from it.

Each entry is one top-level "click" button whose name is also its key, so the
``click`` event names the command to run and an operator reads the mapping
straight from the config. WeCom's limits (its menu/create documentation): one
to three top-level buttons, a name of at most 16 bytes, a key of at most 128.
Commands are checked to parse, so a typo fails at config load, not at a click.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from alertbridge.commands import CommandError
from alertbridge.commands.parser import parse_command

MAX_BUTTONS = 3
MAX_NAME_BYTES = 16


def check_menu_commands(menu: dict[str, str]) -> dict[str, str]:
    """``menu`` unchanged if WeCom would take it and every command parses.

    Raises:
        ValueError: too many buttons, an empty or too long name, or a command
            that does not parse (the parser's own explanation).
    """
    if len(menu) > MAX_BUTTONS:
        raise ValueError(f"WeCom menus have at most {MAX_BUTTONS} top-level buttons, got {len(menu)}")
    for name, command in menu.items():
        size = len(name.encode("utf-8"))
        if not name.strip() or size > MAX_NAME_BYTES:
            raise ValueError(f"button name {name!r} must be 1-{MAX_NAME_BYTES} bytes (UTF-8), is {size}")
        try:
            # The configured max_silence is checked when the command runs.
            parse_command(command, max_silence=timedelta.max)
        except CommandError as exc:
            raise ValueError(f"{name!r} = {command!r} is no command: {exc.message_en}") from None
    return menu


def menu_body(menu: Mapping[str, str]) -> dict[str, object]:
    """The ``menu/create`` request body for ``menu``: one click button per entry."""
    return {"button": [{"type": "click", "name": name, "key": name} for name in menu]}
