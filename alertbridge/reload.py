"""Hot reload: re-read the config file, validate everything, then swap at once.

What a reload replaces is everything built from the config alone — receivers,
channels, templates, silencers, webhook credentials, callback keys, command
settings — bundled as ``Services`` and built exactly as at start-up, so a
config that would not start does not reload either. What lives across
reloads stays: the stores, the HTTP clients (and with them WeCom access
tokens), the metrics, the dispatcher and its rate budgets. Settings that only
those use cannot change without a restart, and a reload that changes them is
refused with the key named.

On any error the running config stays, the reason is logged and counted
(``alertbridge_config_reloads_total{outcome="failure"}``), and the caller —
``POST /-/reload`` or SIGHUP — gets it. Deliveries of a receiver that no
longer exists are dead-lettered by the dispatcher with that reason, never
dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from alertbridge.config import Config, load_config
from alertbridge.config_base import ReceiverBase
from alertbridge.delivery import GroupTracker
from alertbridge.errors import ConfigError
from alertbridge.logs import extend_redaction
from alertbridge.messengers import Channel
from alertbridge.messengers.registry import RECEIVER_MODELS
from alertbridge.messengers.wecom.callback_endpoint import CallbackEndpoint
from alertbridge.metrics import Metrics
from alertbridge.render import Renderer
from alertbridge.web.auth import WebhookAuthenticator
from alertbridge.web.ingest import WebhookIngest

log = logging.getLogger(__name__)

# (dotted key, how to read it): what only start-up uses.
RESTART_ONLY: tuple[tuple[str, Callable[[Config], object]], ...] = (
    ("server.listen", lambda c: c.server.listen),
    ("store", lambda c: c.store),
    ("log", lambda c: c.log),
    ("wecom.api_base", lambda c: c.wecom.api_base),
    ("wecom.timeout", lambda c: c.wecom.timeout),
    ("images", lambda c: c.images),
    ("delivery.dedup_window", lambda c: c.delivery.dedup_window),
)


@dataclass(frozen=True, slots=True)
class Services:
    """Everything built from one config; replaced as a whole on reload."""

    config: Config
    renderer: Renderer
    channels: Mapping[str, Channel]
    tracker: GroupTracker
    ingest: WebhookIngest
    callback: CallbackEndpoint
    auth: WebhookAuthenticator


class ConfigReloader:
    """Re-reads ``path`` and hands a fully built ``Services`` to ``install``."""

    def __init__(
        self,
        *,
        path: Path,
        environ: Mapping[str, str],
        current: Callable[[], Services],
        build: Callable[[Config, str], Services],
        install: Callable[[Services], None],
        metrics: Metrics,
        receiver_models: Sequence[type[ReceiverBase]] = RECEIVER_MODELS,
    ) -> None:
        """``receiver_models``: the receivers the config may have (see ``load_config``)."""
        self._path = path
        self._receiver_models = tuple(receiver_models)
        self._environ = environ
        self._current = current
        self._build = build
        self._install = install
        self._metrics = metrics
        self._lock = asyncio.Lock()

    async def reload(self, trigger: str) -> ConfigError | None:
        """Reload once (one at a time); the error when the running config was kept."""
        async with self._lock:
            try:
                config = load_config(self._path, self._environ, self._receiver_models)
                _refuse_restart_only(self._current().config, config, str(self._path))
                services = self._build(config, str(self._path))
            except ConfigError as exc:
                self._metrics.reloads.labels("failure").inc()
                self._metrics.reload_ok.set(0)
                log.error(
                    "config_reload_failed trigger=%s reason=%s", trigger, " | ".join(str(exc).splitlines())
                )
                return exc
            extend_redaction(config.secrets())
            self._install(services)
            self._metrics.reloads.labels("success").inc()
            self._metrics.reload_ok.set(1)
            log.info("config_reloaded trigger=%s receivers=%s", trigger, ",".join(config.receivers))
            return None


def _refuse_restart_only(old: Config, new: Config, source: str) -> None:
    changed = [key for key, read in RESTART_ONLY if read(old) != read(new)]
    if changed:
        raise ConfigError(source, [(key, "changing this needs a restart, not a reload") for key in changed])
