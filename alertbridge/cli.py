"""The ``alertbridge`` command.

    serve         run the service
    check-config  validate a config file, compile and smoke-render its templates
    render        print the messages a receiver would be sent for a payload, with byte counts
    send-test     send those messages (a sample alert by default) through the real client
    send          queue one text, markdown, card or file for a receiver; the service sends it
    outbox        list deliveries, or retry a dead one
    audit         list who acknowledged or silenced what (and files members sent)
    menu          install a WeCom app's menu from its menu_commands

Exit codes: 0 ok, 1 a check or send failed, 2 usage error (argparse) or bad
input to ``send``, 75 ``send`` not queued, or with ``--wait`` not sent, for now.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from pathlib import Path

from alertbridge import __version__
from alertbridge.errors import AlertbridgeError


def main(argv: list[str] | None = None) -> int:
    # httpx imports its own command line (httpx._main) when click, pygments and
    # rich are installed: ~0.5-1 MB resident that no alertbridge command uses.
    # uvicorn imports watchfiles (uvicorn[standard]) for its --reload when
    # installed: ~0.7 MB resident for serve, which never reloads that way.
    # A None entry (the import system's documented "not importable" mark, which
    # typeshed does not allow for) turns those imports into the ImportError
    # httpx and uvicorn handle (uvicorn falls back to its own file poller).
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    sys.modules.setdefault("watchfiles", None)  # type: ignore[arg-type]
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(serving=argv[:1] == ["serve"]).parse_args(argv)
    try:
        result: int = args.run(args)
        # Flushed here, so a reader gone meanwhile is caught below, not at exit.
        sys.stdout.flush()
    except AlertbridgeError as exc:
        print(exc, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `alertbridge outbox list | head`: the reader has what it wanted.
        # Point stdout at /dev/null so the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


def _parser(*, serving: bool = False) -> argparse.ArgumentParser:
    """The command line; ``serving`` (the first argument is ``serve``) leaves the
    other commands out, so the service does not keep their modules in memory."""
    from alertbridge.config_command import config_command

    parser = argparse.ArgumentParser(prog="alertbridge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"alertbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_command(commands, "serve", _serve, "run the service")
    if serving:
        return parser
    check = config_command(
        commands, "check-config", _check_config, "validate a config file and its templates"
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also try the WeCom apps, robot keys and silencers (sends nothing)",
    )
    from alertbridge.messengers.wecom.appchat_cli import add_appchat_commands
    from alertbridge.messengers.wecom.menu_install import add_menu_commands
    from alertbridge.messengers.wecom.oneoff import add_send_command
    from alertbridge.preview_cli import add_preview_commands
    from alertbridge.store_cli import add_store_commands

    add_preview_commands(commands)
    add_store_commands(commands)
    add_appchat_commands(commands)
    add_menu_commands(commands)
    add_send_command(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from alertbridge.app import create_app
    from alertbridge.config_command import load_from_args
    from alertbridge.logs import configure_logging
    from alertbridge.startup import bind_listen
    from alertbridge.stores import stores_for
    from alertbridge.web.limits import ConnectionLimits, guarded_http_protocol

    config = load_from_args(args)
    # Both before any log line: a second instance or a taken port is one clear error.
    store_lock = stores_for(config).lock_for_serving()
    listener = bind_listen(config.server.host, config.server.port)
    configure_logging(config.secrets(), sys.stderr, config.log.level, config.log.format)
    app = create_app(
        config,
        config_source=str(args.config),
        config_path=Path(args.config),
        environ=os.environ,
        out=sys.stdout,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            # Limits that hold before authentication: head size and time, body time, connections.
            http=guarded_http_protocol(
                ConnectionLimits(
                    max_header_bytes=config.server.max_header_bytes,
                    header_timeout=config.server.header_timeout.total_seconds(),
                    body_timeout=config.server.body_timeout.total_seconds(),
                )
            ),
            limit_concurrency=config.server.max_connections,
        )
    )
    # Everything built so far (modules, config, app) lives as long as the
    # process: moved out of the collector's generations, a full collection
    # walks only what serving allocates since. Under the ingest bench those
    # full collections were the p99 (~35 ms -> ~15 ms without them, Phase 10).
    gc.collect()
    gc.freeze()
    try:
        server.run(sockets=[listener])
    finally:
        store_lock.close()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from alertbridge.app import build_renderer, unauthenticated_warnings
    from alertbridge.commands.authz import command_warnings
    from alertbridge.config_command import load_from_args

    config = load_from_args(args)
    build_renderer(config, str(args.config))
    for key, warning in [*unauthenticated_warnings(config), *command_warnings(config)]:
        print(f"{args.config}: {key}: warning: {warning}", file=sys.stderr)
    print(
        f"{args.config}: OK ({len(config.receivers)} receivers, {len(config.wecom.apps)} WeCom apps; "
        "every template compiled and rendered against sample data)"
    )
    if args.online:
        from alertbridge.messengers.registry import online_checks
        from alertbridge.online_check import run_online_checks

        return 0 if asyncio.run(run_online_checks(config, sys.stdout, online_checks())) else 1
    return 0
