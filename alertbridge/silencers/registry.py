"""Builds the configured silencers: the one place that maps ``kind`` to a class.

The silencer classes (and their shared Alertmanager-API-v2 code) are imported
only when a silencer is configured: ``alertbridge serve`` without
``[silencers]`` does not load them (~0.6 MB resident).
"""

from __future__ import annotations

import httpx

from alertbridge.config import Config, SilencerConfig
from alertbridge.errors import ConfigError
from alertbridge.metrics import Metrics
from alertbridge.silencers import Silencer


def build_silencers(
    config: Config, http: httpx.AsyncClient, metrics: Metrics | None = None
) -> dict[str, Silencer]:
    """One silencer per ``[silencers.NAME]``, sharing the caller's HTTP client
    (whose lifetime the composition root owns), counting into ``metrics``.

    Raises:
        ConfigError: a silencer's credentials do not fit its kind: an
            Alertmanager with both ``bearer_token`` and ``basic_auth`` (only
            one ``Authorization`` header can be sent) or with Grafana's
            ``token``; a Grafana without ``token``, with Alertmanager-style
            credentials (which it would not send) or with several URLs.
    """
    problems: list[tuple[str, str]] = []
    for name, silencer in config.silencers.items():
        problems.extend((f"silencers.{name}{key}", problem) for key, problem in _problems(silencer))
    if problems:
        raise ConfigError("config", problems)
    if not config.silencers:
        return {}
    from alertbridge.silencers.counted import CountedSilencer

    counted = metrics if metrics is not None else Metrics()
    return {
        name: CountedSilencer(_build(name, silencer, http), counted)
        for name, silencer in config.silencers.items()
    }


def _problems(config: SilencerConfig) -> list[tuple[str, str]]:
    if config.kind == "grafana":
        found = []
        if config.token is None:
            found.append((".token", "a grafana silencer needs a service-account token"))
        if config.bearer_token is not None or config.basic_auth is not None:
            found.append(("", 'kind = "grafana" uses token; remove bearer_token / basic_auth'))
        if len(config.url) != 1:
            found.append((".url", "a grafana silencer takes one Grafana base URL"))
        return found
    found = []
    if config.bearer_token is not None and config.basic_auth is not None:
        found.append(("", "set bearer_token or basic_auth, not both"))
    if config.token is not None:
        found.append((".token", 'only for kind = "grafana"; use bearer_token for Alertmanager'))
    return found


def _build(name: str, config: SilencerConfig, http: httpx.AsyncClient) -> Silencer:
    match config.kind:
        case "alertmanager":
            from alertbridge.silencers.alertmanager import AlertmanagerSilencer

            return AlertmanagerSilencer(name, config, http)
        case "grafana":
            from alertbridge.silencers.grafana import GrafanaSilencer

            return GrafanaSilencer(name, config, http)
    raise TypeError(f"unknown silencer kind {config.kind!r}")
