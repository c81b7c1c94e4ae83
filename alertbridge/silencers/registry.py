"""Builds the configured silencers: the one place that maps ``kind`` to a class."""

from __future__ import annotations

import httpx

from alertbridge.config import Config, SilencerConfig
from alertbridge.errors import ConfigError
from alertbridge.silencers import Silencer
from alertbridge.silencers.alertmanager import AlertmanagerSilencer


def build_silencers(config: Config, http: httpx.AsyncClient) -> dict[str, Silencer]:
    """One silencer per ``[silencers.NAME]``, sharing the caller's HTTP client
    (whose lifetime the composition root owns).

    Raises:
        ConfigError: a silencer sets both ``bearer_token`` and ``basic_auth``;
            only one ``Authorization`` header can be sent.
    """
    problems = [
        (f"silencers.{name}", "set bearer_token or basic_auth, not both")
        for name, silencer in config.silencers.items()
        if silencer.bearer_token is not None and silencer.basic_auth is not None
    ]
    if problems:
        raise ConfigError("config", problems)
    return {name: _build(name, silencer, http) for name, silencer in config.silencers.items()}


def _build(name: str, config: SilencerConfig, http: httpx.AsyncClient) -> Silencer:
    match config.kind:
        case "alertmanager":
            return AlertmanagerSilencer(name, config, http)
    raise TypeError(f"unknown silencer kind {config.kind!r}")
