"""``alertbridge appchat create`` / ``appchat show``: make the group chat an
``appchat`` receiver posts into, and look at one (``appchat/create``,
``appchat/get``, docs §6).

Only the app that created a chat can post into it or read it, and only an
app whose visible range is the root department may create one (48002
otherwise): both commands say so when WeCom refuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

from alertbridge.config import Config, load_config
from alertbridge.errors import ConfigError
from alertbridge.messengers.wecom.client import WeComClient, quiet_http_loggers
from alertbridge.messengers.wecom.config import WeComAppConfig

_T = TypeVar("_T")


def add_appchat_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``appchat create`` and ``appchat show`` to the CLI's commands."""
    appchat = commands.add_parser("appchat", help="create and show WeCom group chats of an app (appchat)")
    actions = appchat.add_subparsers(dest="appchat_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a group chat the app can post into")
    show = actions.add_parser("show", help="show a group chat the app created")
    for sub in (create, show):
        sub.add_argument("-c", "--config", required=True, type=Path, help="the TOML config file")
        sub.add_argument("--app", required=True, help="the [wecom.apps] name that owns the chat")
    create.add_argument("--name", required=True, help="the chat's name (at most 50 characters)")
    create.add_argument("--owner", required=True, help="the owner's user id (one of --users)")
    create.add_argument("--users", required=True, help="the members' user ids, comma-separated (2-2000)")
    create.add_argument(
        "--chatid", help="the chatid to use (at most 32 letters or digits); WeCom picks one if absent"
    )
    create.set_defaults(run=_create)
    show.add_argument("chatid")
    show.set_defaults(run=_show)


def _create(args: argparse.Namespace) -> int:
    config, app = _app(args)
    users = [user.strip() for user in args.users.split(",") if user.strip()]
    body: dict[str, object] = {"name": args.name, "owner": args.owner, "userlist": users}
    if args.chatid:
        body["chatid"] = args.chatid
    chatid = asyncio.run(_call(config, lambda client: client.create_appchat(args.app, app, body)))
    zh = config.server.language == "zh"
    print(f"已创建群聊 chatid = {chatid}" if zh else f"created group chat chatid = {chatid}")
    print(f'receiver: channel = "appchat", app = "{args.app}", chatid = "{chatid}"')
    return 0


def _show(args: argparse.Namespace) -> int:
    config, app = _app(args)
    info = asyncio.run(_call(config, lambda client: client.get_appchat(args.app, app, args.chatid)))
    print(_describe(info, zh=config.server.language == "zh"))
    return 0


def _describe(info: Mapping[str, object], *, zh: bool) -> str:
    users = info.get("userlist")
    members = ", ".join(str(u) for u in users) if isinstance(users, list) else ""
    labels = ("群聊", "名称", "群主", "成员") if zh else ("chatid", "name", "owner", "members")
    values = (info.get("chatid", ""), info.get("name", ""), info.get("owner", ""), members)
    return "\n".join(f"{label}: {value}" for label, value in zip(labels, values, strict=True))


def _app(args: argparse.Namespace) -> tuple[Config, WeComAppConfig]:
    config = load_config(args.config, os.environ)
    app = config.wecom.apps.get(args.app)
    if app is None:
        known = ", ".join(sorted(config.wecom.apps)) or "none defined"
        raise ConfigError(str(args.config), [("wecom.apps", f"no app {args.app!r} ({known})")])
    return config, app


async def _call(config: Config, call: Callable[[WeComClient], Awaitable[_T]]) -> _T:
    quiet_http_loggers()
    async with httpx.AsyncClient(timeout=config.wecom.timeout.total_seconds()) as http:
        return await call(WeComClient(http, config.wecom.api_base))
