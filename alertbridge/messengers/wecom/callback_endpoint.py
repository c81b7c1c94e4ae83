"""What serves ``/wecom/callback/{app}`` for one config: ``WeComCallback`` when
an app has callback keys, else ``NoCallbacks``.

Why two: the callback stack — message crypto (pycryptodome's AES, ctypes),
the XML parser, the command executor — is ~1.5 MB resident that a service
whose apps only send never uses. It is imported when a config (at start-up
or on reload) gives an app ``token`` and ``encoding_aes_key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from alertbridge.config import Config
from alertbridge.metrics import Metrics

if TYPE_CHECKING:
    from alertbridge.delivery import SharedBudget
    from alertbridge.messengers.wecom.client import WeComClient
    from alertbridge.messengers.wecom.contacts import ContactDirectory
    from alertbridge.silencers import Silencer
    from alertbridge.stores.state import StateStore

# The answer for an app without callback keys (or not configured at all).
UNKNOWN_APP = "unknown_app"
UNKNOWN_APP_BODY = "no callback configured for this app\n"


class CallbackEndpoint(Protocol):
    """The route's handler, replaced with the rest of a config on reload."""

    async def endpoint(self, request: Request) -> Response: ...

    @property
    def busy(self) -> bool:
        """Still acting on a command (see ``drain``)."""
        ...

    async def drain(self) -> None:
        """Wait for running command tasks (at shutdown), so none is cut in half."""
        ...


class NoCallbacks:
    """No app has callback keys: every app's callback URL is unknown (404), as
    ``WeComCallback`` answers for an app without keys."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def endpoint(self, request: Request) -> Response:
        self._metrics.callbacks.labels(UNKNOWN_APP).inc()
        return PlainTextResponse(UNKNOWN_APP_BODY, status_code=404)

    @property
    def busy(self) -> bool:
        return False

    async def drain(self) -> None:
        return None


def has_callbacks(config: Config) -> bool:
    """Whether some app has the keys WeCom's callbacks are checked with."""
    return any(
        app.token is not None and app.encoding_aes_key is not None for app in config.wecom.apps.values()
    )


def callback_endpoint(
    config: Config,
    *,
    state: StateStore,
    silencers: Mapping[str, Silencer],
    metrics: Metrics,
    directory: ContactDirectory,
    client: WeComClient,
    budget: SharedBudget,
) -> CallbackEndpoint:
    """The handler for ``config``; see the module docs."""
    if not has_callbacks(config):
        return NoCallbacks(metrics)
    from alertbridge.commands.executor import CommandExecutor
    from alertbridge.messengers.wecom.callback import WeComCallback

    executor = CommandExecutor(
        config=config, state=state, silencers=silencers, metrics=metrics, directory=directory
    )
    return WeComCallback(
        config=config, state=state, executor=executor, client=client, metrics=metrics, budget=budget
    )
