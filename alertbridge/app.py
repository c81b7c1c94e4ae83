"""The composition root: builds every concrete object from one ``Config``.

Nothing else in alertbridge constructs stores, clients or channels; they are
created here (in the lifespan, so they are opened and closed with the server)
and passed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge import __version__
from alertbridge.config import Config
from alertbridge.deferred_http import DeferredPoolClient
from alertbridge.delivery import Dispatcher, GroupTracker, SendBudget, SharedBudget
from alertbridge.delivery.priority import WebhookLoad
from alertbridge.errors import ConfigError, TemplateError
from alertbridge.images import ImageFetcher, new_image_http_client
from alertbridge.messengers.registry import (
    BYTE_LIMITS,
    MessengerDeps,
    MessengerEntry,
    build_channels,
    build_messengers,
    receiver_models,
)
from alertbridge.messengers.wecom.callback_endpoint import CallbackEndpoint, callback_endpoint
from alertbridge.messengers.wecom.client import WeComClient, quiet_http_loggers
from alertbridge.messengers.wecom.contacts import ContactDirectory
from alertbridge.metrics import Metrics
from alertbridge.reload import ConfigReloader, Services
from alertbridge.render import Renderer
from alertbridge.silencers.registry import build_silencers
from alertbridge.stores import OutboxStore, stores_for
from alertbridge.web.auth import WebhookAuthenticator
from alertbridge.web.direct_routes import DirectRoutes
from alertbridge.web.health import OperationalEndpoints, healthz
from alertbridge.web.ingest import WebhookIngest
from alertbridge.web.refusals import RefusalLog

log = logging.getLogger(__name__)


def build_renderer(
    config: Config, source: str, byte_limits: Mapping[tuple[str, str], int] = BYTE_LIMITS
) -> Renderer:
    """A renderer with every receiver's template compiled and smoke-rendered;
    ``byte_limits`` are every messenger's (``Messengers.byte_limits``).

    Raises:
        ConfigError: a receiver's template is missing or broken.
    """
    renderer = Renderer(
        timezone=config.server.tz, templates_dir=config.templates.dir, byte_limits=byte_limits
    )
    problems: list[tuple[str, str]] = []
    for name, receiver in config.receivers.items():
        try:
            renderer.check(
                receiver.template,
                config.language_of(name),
                receiver.rendered_msgtype,
                receiver.digest_msgtype,
            )
        except TemplateError as exc:
            problems.append((f"receivers.{name}.template", str(exc)))
    if problems:
        raise ConfigError(source, problems)
    return renderer


def reload_over_http(config: Config) -> bool:
    """Whether ``POST /-/reload`` is served: as configured, else only behind [webhook_auth]."""
    if config.server.reload_endpoint is not None:
        return config.server.reload_endpoint
    return config.webhook_auth is not None


def unauthenticated_warnings(config: Config) -> list[tuple[str, str]]:
    """``(key, warning)`` for what is open to anyone who can reach the listen
    address, for check-config and the start-up log."""
    if config.webhook_auth is not None:
        return []
    found = [
        (
            "webhook_auth",
            f"[webhook_auth] is not set: anyone who can reach {config.server.listen} can post alerts "
            "to every receiver without a grafana_hmac_secret",
        )
    ]
    if reload_over_http(config):
        found.append(
            (
                "server.reload_endpoint",
                "[server] reload_endpoint = true without [webhook_auth]: anyone can trigger POST /-/reload",
            )
        )
    return found


def new_http_client(config: Config) -> httpx.AsyncClient:
    """The client for WeCom's API and the silencers; its pool (and TLS context)
    is built on its first request (see ``alertbridge.deferred_http``)."""
    timeout = config.wecom.timeout.total_seconds()
    return DeferredPoolClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        headers={"User-Agent": f"alertbridge/{__version__}"},
        follow_redirects=False,
    )


def build_image_fetcher(config: Config) -> tuple[ImageFetcher, httpx.AsyncClient]:
    """The fetcher of alert images and its own HTTP client (no proxies, no keep-alive:
    see ``alertbridge.images``), which the caller closes."""
    http = new_image_http_client(config.images)
    return ImageFetcher(config.images, http), http


def create_app(
    config: Config,
    *,
    config_source: str = "config",
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    store: OutboxStore | None = None,
    extra_messengers: Sequence[MessengerEntry] = (),
) -> DirectRoutes:
    """The ASGI app. Raises ``ConfigError`` for templates that do not render.

    ``config_path`` (and ``environ`` for its ``${VAR}``s) is what SIGHUP and
    ``POST /-/reload`` re-read; without it there is nothing to reload.
    ``store`` replaces the one the config names (tests inject failures with it).
    ``extra_messengers`` deliver receivers of kinds not built in (the config
    must have been loaded with their receiver models, see ``receiver_models``).
    """
    quiet_http_loggers()
    metrics = Metrics()
    images, image_http = build_image_fetcher(config)
    # References, acks and the audit trail live beside the outbox (for
    # SQLite: in the same file, on the same connection).
    stores = stores_for(config, outbox=store, metrics=metrics)
    outbox, state = stores.outbox, stores.state
    http = new_http_client(config)
    client = WeComClient(http, config.wecom.api_base, metrics=metrics)
    stream = out if out is not None else sys.stdout
    refusals = RefusalLog()
    # Webhooks in flight, which the dispatcher gives way to; shared across reloads.
    webhook_load = WebhookLoad()
    # Department and tag lookups for allow-lists, cached across config reloads.
    directory = ContactDirectory(client)
    # WeCom's per-member limits count alerts and command replies alike: one budget for both.
    budget = SendBudget()
    shared_budget = SharedBudget(budget, outbox)

    def build(cfg: Config, source: str) -> Services:
        """Everything that depends on the config alone (see alertbridge.reload)."""
        deps = MessengerDeps(config=cfg, client=client, out=stream, images=images, metrics=metrics)
        messengers = build_messengers(deps, state, extra_messengers)
        renderer = build_renderer(cfg, source, messengers.byte_limits)
        silencers = build_silencers(cfg, http, metrics)
        auth = WebhookAuthenticator(cfg.webhook_auth)
        return Services(
            config=cfg,
            renderer=renderer,
            channels=build_channels(deps, extra_messengers),
            tracker=GroupTracker(config=cfg, state=state, silencers=silencers, messengers=messengers),
            ingest=WebhookIngest(
                cfg,
                outbox,
                auth,
                on_enqueued=lambda: dispatcher.wake(),
                metrics=metrics,
                refusals=refusals,
                load=webhook_load,
            ),
            callback=callback_endpoint(
                cfg,
                state=state,
                silencers=silencers,
                metrics=metrics,
                directory=directory,
                client=client,
                budget=shared_budget,
            ),
            auth=auth,
        )

    current = build(config, config_source)
    dispatcher = Dispatcher(
        config=config,
        store=outbox,
        channels=current.channels,
        renderer=current.renderer,
        tracker=current.tracker,
        budget=budget,
        metrics=metrics,
        webhooks=webhook_load,
    )
    operational = OperationalEndpoints(
        store=outbox,
        metrics=metrics,
        dispatcher_heartbeat=lambda: dispatcher.heartbeat,
        pool_usage=stores.pool_usage,
    )
    tasks: dict[str, asyncio.Task[None]] = {}
    # Callbacks of earlier configs may still be acting on a command; drained at shutdown.
    retired: list[CallbackEndpoint] = []
    reloads: set[asyncio.Task[ConfigError | None]] = set()

    def install(services: Services) -> None:
        nonlocal current
        retired[:] = [callback for callback in (*retired, current.callback) if callback.busy]
        current = services
        dispatcher.reconfigure(
            config=services.config,
            channels=services.channels,
            renderer=services.renderer,
            tracker=services.tracker,
        )
        upkeep = tasks.pop("upkeep", None)
        if upkeep is not None:
            upkeep.cancel()
            tasks["upkeep"] = asyncio.create_task(services.tracker.run_upkeep(), name="upkeep")

    reloader = (
        ConfigReloader(
            path=config_path,
            environ=environ if environ is not None else {},
            current=lambda: current,
            build=build,
            install=install,
            metrics=metrics,
            receiver_models=receiver_models(extra_messengers),
        )
        if config_path is not None
        else None
    )

    def on_sighup() -> None:
        if reloader is not None:
            task = asyncio.create_task(reloader.reload("SIGHUP"))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await outbox.open()
        await outbox.release_leases()
        await state.open()
        tasks["dispatcher"] = asyncio.create_task(dispatcher.run(), name="dispatcher")
        tasks["upkeep"] = asyncio.create_task(current.tracker.run_upkeep(), name="upkeep")
        sighup = _listen_for_sighup(on_sighup)
        for key, warning in unauthenticated_warnings(config):
            log.warning("webhooks_unauthenticated setting=%s reason=%s", key, warning)
        log.info("alertbridge_started version=%s receivers=%s", __version__, ",".join(config.receivers))
        try:
            yield
        finally:
            if sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            refusals.flush()
            for callback in (*retired, current.callback):
                await callback.drain()
            for task in tasks.values():
                task.cancel()
            for task in tasks.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await http.aclose()
            await image_http.aclose()
            await state.close()
            await outbox.close()

    async def alertmanager(request: Request) -> Response:
        return await current.ingest.alertmanager(request)

    async def grafana(request: Request) -> Response:
        return await current.ingest.grafana(request)

    async def wecom_callback(request: Request) -> Response:
        return await current.callback.endpoint(request)

    async def reload_endpoint(request: Request) -> Response:
        if reloader is None or not reload_over_http(current.config):
            return JSONResponse(
                {"status": "error", "error": "reloading over HTTP is disabled"}, status_code=404
            )
        if not current.auth.allows(request.headers.get("authorization")):
            return JSONResponse(
                {"status": "error", "error": "missing or invalid credentials (see [webhook_auth])"},
                status_code=401,
            )
        failed = await reloader.reload("http")
        if failed is not None:
            return JSONResponse(
                {
                    "status": "error",
                    "error": "config not reloaded; still running the previous one",
                    "problems": str(failed).splitlines(),
                },
                status_code=400,
            )
        return JSONResponse({"status": "reloaded", "receivers": sorted(current.config.receivers)})

    # Every alert comes in through these two: served before Starlette's layers (DirectRoutes).
    webhooks = [
        Route("/alertmanager/{receiver}", alertmanager, methods=["POST"]),
        Route("/grafana/{receiver}", grafana, methods=["POST", "PUT"]),
    ]
    routes = [
        *webhooks,
        Route("/wecom/callback/{app}", wecom_callback, methods=["GET", "POST"]),
        Route("/-/reload", reload_endpoint, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", operational.readyz, methods=["GET"]),
        Route("/metrics", operational.metrics, methods=["GET"]),
    ]
    return DirectRoutes(Starlette(routes=routes, lifespan=lifespan), webhooks)


def _listen_for_sighup(handler: Callable[[], None]) -> bool:
    """Reload on SIGHUP, where signals can be handled (the main thread of a server)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handler)
    except (NotImplementedError, RuntimeError, ValueError):
        log.debug("sighup_reload_unavailable reason=not the main thread")
        return False
    return True
