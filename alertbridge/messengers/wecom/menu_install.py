"""``alertbridge menu install``: upload an app's ``menu_commands`` as its WeCom menu.

WeCom keeps the menu; alertbridge only needs to know what each key runs, so
the menu is installed once (and again after a change) rather than at startup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TextIO

from alertbridge.config import Config, load_config
from alertbridge.errors import DeliveryError
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.menu import menu_body


def add_menu_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``menu install`` to the CLI's commands."""
    menu = commands.add_parser("menu", help="the WeCom app menu")
    actions = menu.add_subparsers(dest="menu_command", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="upload an app's menu_commands as its menu (menu/create)")
    install.add_argument("-c", "--config", required=True, type=Path, help="the TOML config file")
    install.add_argument("--app", required=True, help="the [wecom.apps] name")
    install.set_defaults(run=_install)


def _install(args: argparse.Namespace) -> int:
    return asyncio.run(install_menu(load_config(args.config, os.environ), args.app, sys.stdout))


async def install_menu(config: Config, app_name: str, out: TextIO) -> int:
    """Replace app ``app_name``'s menu with its ``menu_commands``; the exit code."""
    from alertbridge.app import new_http_client

    app = config.wecom.apps.get(app_name)
    if app is None:
        known = ", ".join(sorted(config.wecom.apps)) or "none"
        print(f"no app {app_name!r} in [wecom.apps] (configured: {known})", file=out)
        return 1
    if not app.menu_commands:
        print(f"[wecom.apps.{app_name}] has no menu_commands to install", file=out)
        return 1
    async with new_http_client(config) as http:
        client = WeComClient(http, config.wecom.api_base)
        try:
            await client.create_menu(app_name, app, menu_body(app.menu_commands))
        except DeliveryError as exc:
            print(f"FAILED ({exc.reason}): {exc}", file=out)
            return 1
    buttons = ", ".join(f"{name} → {command}" for name, command in app.menu_commands.items())
    print(f"installed the menu of app {app_name} (agent {app.agent_id}): {buttons}", file=out)
    return 0
