"""The composition root: builds every concrete object from one ``Config``.

Nothing else in alertbridge constructs stores, clients or channels; they are
created here (in the lifespan, so they are opened and closed with the server)
and passed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import TextIO

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from alertbridge import __version__
from alertbridge.channels import Channel
from alertbridge.channels.registry import build_channel
from alertbridge.commands.executor import CommandExecutor
from alertbridge.config import Config
from alertbridge.dispatcher import Dispatcher
from alertbridge.errors import ConfigError, TemplateError
from alertbridge.images import ImageFetcher, new_image_http_client
from alertbridge.metrics import Metrics
from alertbridge.render import Renderer
from alertbridge.silencers.registry import build_silencers
from alertbridge.stores import OutboxStore
from alertbridge.stores.sqlite import SqliteOutboxStore
from alertbridge.stores.sqlite_state import SqliteStateStore
from alertbridge.tracking import GroupTracker
from alertbridge.web.auth import WebhookAuthenticator
from alertbridge.web.callback import WeComCallback
from alertbridge.web.health import OperationalEndpoints, healthz
from alertbridge.web.ingest import WebhookIngest
from alertbridge.wecom.client import WeComClient, quiet_http_loggers

log = logging.getLogger(__name__)


def build_renderer(config: Config, source: str) -> Renderer:
    """A renderer with every receiver's template compiled and smoke-rendered.

    Raises:
        ConfigError: a receiver's template is missing or broken.
    """
    renderer = Renderer(timezone=config.server.tz, templates_dir=config.templates.dir)
    problems: list[tuple[str, str]] = []
    for name, receiver in config.receivers.items():
        try:
            renderer.check(receiver.template, config.language_of(name), receiver.rendered_msgtype)
        except TemplateError as exc:
            problems.append((f"receivers.{name}.template", str(exc)))
    if problems:
        raise ConfigError(source, problems)
    return renderer


def new_http_client(config: Config) -> httpx.AsyncClient:
    timeout = config.wecom.timeout.total_seconds()
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        headers={"User-Agent": f"alertbridge/{__version__}"},
        follow_redirects=False,
    )


def build_channels(
    config: Config, client: WeComClient, out: TextIO, images: ImageFetcher | None = None
) -> dict[str, Channel]:
    return {
        name: build_channel(name, receiver, apps=config.wecom.apps, client=client, out=out, images=images)
        for name, receiver in config.receivers.items()
    }


def build_image_fetcher(config: Config) -> tuple[ImageFetcher, httpx.AsyncClient]:
    """The fetcher of alert images and its own HTTP client (no proxies, no keep-alive:
    see ``alertbridge.images``), which the caller closes."""
    http = new_image_http_client(config.images)
    return ImageFetcher(config.images, http), http


def create_app(
    config: Config,
    *,
    config_source: str = "config",
    out: TextIO | None = None,
    store: OutboxStore | None = None,
) -> Starlette:
    """The ASGI app. Raises ``ConfigError`` for templates that do not render.

    ``store`` replaces the one the config names (tests inject failures with it).
    """
    quiet_http_loggers()
    metrics = Metrics()
    renderer = build_renderer(config, config_source)
    images, image_http = build_image_fetcher(config)
    outbox: OutboxStore = (
        store
        if store is not None
        else SqliteOutboxStore(config.store.sqlite_path, dedup_window=config.delivery.dedup_window)
    )
    # References, acks and the audit trail live in the same database file.
    state = SqliteStateStore(config.store.sqlite_path)
    http = new_http_client(config)
    client = WeComClient(http, config.wecom.api_base, metrics=metrics)
    silencers = build_silencers(config, http, metrics)
    stream = out if out is not None else sys.stdout
    tracker = GroupTracker(config=config, state=state, silencers=silencers, client=client)
    dispatcher = Dispatcher(
        config=config,
        store=outbox,
        channels=build_channels(config, client, stream, images),
        renderer=renderer,
        tracker=tracker,
        metrics=metrics,
    )
    ingest = WebhookIngest(
        config,
        outbox,
        WebhookAuthenticator(config.webhook_auth),
        on_enqueued=dispatcher.wake,
        metrics=metrics,
    )
    executor = CommandExecutor(config=config, state=state, silencers=silencers, metrics=metrics)
    callback = WeComCallback(config=config, state=state, executor=executor, client=client, metrics=metrics)
    operational = OperationalEndpoints(
        store=outbox, metrics=metrics, dispatcher_heartbeat=lambda: dispatcher.heartbeat
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await outbox.open()
        await outbox.release_leases()
        await state.open()
        tasks = [
            asyncio.create_task(dispatcher.run(), name="dispatcher"),
            asyncio.create_task(tracker.run_upkeep(), name="upkeep"),
        ]
        log.info("alertbridge_started version=%s receivers=%s", __version__, ",".join(config.receivers))
        try:
            yield
        finally:
            await callback.drain()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await http.aclose()
            await image_http.aclose()
            await state.close()
            await outbox.close()

    routes = [
        Route("/alertmanager/{receiver}", ingest.alertmanager, methods=["POST"]),
        Route("/grafana/{receiver}", ingest.grafana, methods=["POST", "PUT"]),
        Route("/wecom/callback/{app}", callback.endpoint, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", operational.readyz, methods=["GET"]),
        Route("/metrics", operational.metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
