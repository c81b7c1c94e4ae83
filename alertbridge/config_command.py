"""What every config-reading subcommand shares: its ``-c/--config`` option and
loading that file with the process environment."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from alertbridge.config import Config, load_config


def config_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, run: object, help_text: str
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` that runs ``run`` on a ``-c/--config`` file."""
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.add_argument("-c", "--config", required=True, type=Path, help="the TOML config file")
    sub.set_defaults(run=run)
    return sub


def load_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, os.environ)
