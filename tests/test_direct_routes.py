"""The webhook routes are served before Starlette's layers (``alertbridge.web.direct_routes``),
and everything else, a webhook path with another method included, still reaches Starlette."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from alertbridge.app import create_app
from alertbridge.testing.server import ServerThread
from alertbridge.web.direct_routes import DirectRoutes
from tests.ingest_rig import FIRING, FailingStore, ingest_config, post


class _Behind:
    """The app behind: records the paths it was asked for, answers 299."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope.get("path", scope["type"]))
        if scope["type"] == "http":
            await PlainTextResponse("behind", 299)(scope, receive, send)


async def _endpoint(request: Request) -> Response:
    return PlainTextResponse(f"direct {request.path_params['receiver']}")


@pytest.fixture
def direct() -> tuple[DirectRoutes, _Behind]:
    behind = _Behind()
    return DirectRoutes(behind, [Route("/alertmanager/{receiver}", _endpoint, methods=["POST"])]), behind


async def _call(app: DirectRoutes, method: str, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    await app(scope, receive, send)
    return sent


async def test_a_webhook_is_answered_without_the_app_behind(direct: tuple[DirectRoutes, _Behind]) -> None:
    app, behind = direct
    sent = await _call(app, "POST", "/alertmanager/oncall")
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"direct oncall"
    assert behind.paths == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/alertmanager/oncall"),  # Starlette answers 405 for its own route
        ("POST", "/alertmanager/a/b"),  # {receiver} is one path segment
        ("POST", "/alertmanager/"),
        ("GET", "/healthz"),
    ],
)
async def test_everything_else_goes_to_the_app_behind(
    direct: tuple[DirectRoutes, _Behind], method: str, path: str
) -> None:
    app, behind = direct
    sent = await _call(app, method, path)
    assert sent[0]["status"] == 299
    assert behind.paths == [path]


async def test_lifespan_goes_to_the_app_behind(direct: tuple[DirectRoutes, _Behind]) -> None:
    app, behind = direct
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert behind.paths == ["lifespan"]


async def test_a_direct_endpoint_sees_the_app_as_behind_starlette() -> None:
    """``request.app`` and ``url_for`` work as they would under Starlette's router."""

    async def links(request: Request) -> Response:
        return PlainTextResponse(f"{type(request.app).__name__} {request.url_for('health').path}")

    webhook = Route("/alertmanager/{receiver}", links, methods=["POST"])
    behind = Starlette(routes=[webhook, Route("/healthz", _endpoint, name="health")])
    sent = await _call(DirectRoutes(behind, [webhook]), "POST", "/alertmanager/oncall")
    assert sent[1]["body"] == b"Starlette /healthz"


def test_an_unexpected_error_is_a_logged_500_and_the_next_webhook_is_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, serve_app: Callable[..., str]
) -> None:
    config = ingest_config(tmp_path)
    store = FailingStore(config.store.sqlite_path)
    store.failing, store.error = True, RuntimeError("a bug")  # not a StoreError: a bug
    with caplog.at_level(logging.ERROR):
        base_url = serve_app(config, out=io.StringIO(), store=store)
        broken = post(base_url, "/alertmanager/console", FIRING)
        store.failing = False
        fine = post(base_url, "/alertmanager/console", FIRING)
    # Alertmanager retries a 5xx: nothing accepted is lost, the retry is stored.
    assert broken.status_code == 500
    assert fine.status_code == 200, fine.text
    assert fine.json()["status"] == "accepted"
    assert any("a bug" in (r.exc_text or "") or "a bug" in r.getMessage() for r in caplog.records)


def test_the_served_app_answers_webhooks_and_the_other_routes(tmp_path: Path) -> None:
    app = create_app(ingest_config(tmp_path), out=io.StringIO())
    assert isinstance(app, DirectRoutes)
    with ServerThread(app) as running:
        accepted = post(running.base_url, "/alertmanager/console", FIRING)
        wrong_method = httpx.get(f"{running.base_url}/alertmanager/console", timeout=10)
        health = httpx.get(f"{running.base_url}/healthz", timeout=10)
    assert accepted.status_code == 200
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert health.status_code == 200
