"""``python -m alertbridge.testing.fake_wecom``: the fake on a port for manual trials."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from alertbridge.testing.fake_wecom.fake import FakeWeCom
from alertbridge.testing.fake_wecom.records import FakeApp
from alertbridge.testing.fake_wecom.spec import DEFAULT_ROBOT_KEY


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alertbridge.testing.fake_wecom",
        description="A fake WeCom API for trials and tests (never for production).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--corp-id", action="append", default=[], help="one per app (repeat)")
    parser.add_argument("--secret", action="append", default=[], help="one per app, in --corp-id order")
    parser.add_argument("--agent-id", action="append", type=int, default=[], help="one per app")
    parser.add_argument("--robot-key", action="append", default=[], help="a valid robot key (repeat)")
    parser.add_argument(
        "--user", action="append", default=None, help="a known userid (repeat); default: all exist"
    )
    parser.add_argument(
        "--token-lifetime", type=int, default=7200, help="expires_in of issued tokens, seconds"
    )
    return parser


def apps_from_args(args: argparse.Namespace) -> list[FakeApp]:
    corp_ids: Sequence[str] = args.corp_id
    if not (len(corp_ids) == len(args.secret) == len(args.agent_id)):
        raise SystemExit("give --corp-id, --secret and --agent-id once per app, in the same order")
    if not corp_ids:
        return [FakeApp()]
    return [FakeApp(c, s, a) for c, s, a in zip(corp_ids, args.secret, args.agent_id, strict=True)]


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn  # only the command line needs it directly

    args = build_parser().parse_args(argv)
    apps = apps_from_args(args)
    robot_keys = args.robot_key or [DEFAULT_ROBOT_KEY]
    fake = FakeWeCom(apps, robot_keys, users=args.user, token_lifetime=args.token_lifetime)
    for app in apps:
        print(f"fake WeCom app: corp_id={app.corp_id} agent_id={app.agent_id} secret={app.secret}")
    for key in robot_keys:
        print(f"fake WeCom robot key: {key}")
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="info")
