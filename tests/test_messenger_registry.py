"""A messenger that is not built in plugs in through the registry's extension point.

The ``webhook`` messenger below exists only in this test: its own receiver
model (``channel = "webhook"``), its own byte limits and a channel that POSTs
each rendered message to a tiny loopback HTTP server. A real uvicorn
alertbridge serving a config with a ``webhook`` receiver delivers an
Alertmanager notification to it, without any core module knowing the kind.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alertbridge.app import create_app
from alertbridge.config import Config, parse_config
from alertbridge.config_base import ReceiverBase
from alertbridge.errors import ConfigError, PermanentDeliveryError
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Channel, Messenger, Messengers, Receipt
from alertbridge.messengers.console import ConsoleMessenger
from alertbridge.messengers.registry import MessengerDeps, MessengerEntry, receiver_models
from alertbridge.testing.server import ServerThread

FIRING = (Path(__file__).parent / "data" / "alertmanager" / "firing.json").read_bytes()
TOKEN = "webhook-token-0123456789"


class WebhookReceiver(ReceiverBase):
    channel: Literal["webhook"]
    url: str

    @property
    def audience(self) -> tuple[str, str]:
        return "网络钩子", "a webhook"


class WebhookChannel:
    kind = "webhook"
    duplicate_check: timedelta | None = None

    def __init__(self, url: str, receiver: str) -> None:
        self._url = url
        self._receiver = receiver

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        del recipients  # a webhook has none
        body = {"receiver": self._receiver, "content": message.content, "part": message.part}
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(self._url, json=body)
        if response.status_code != 200:
            raise PermanentDeliveryError(f"webhook answered {response.status_code}")
        return Receipt(msgid=response.json()["id"])


WEBHOOK_LIMITS: Final = {("webhook", "text"): 1000, ("webhook", "markdown"): 1000}


class WebhookMessenger(Messenger):
    kinds = ("webhook",)
    byte_limits = WEBHOOK_LIMITS


def webhook_channel(name: str, receiver: ReceiverBase, deps: MessengerDeps) -> Channel:
    assert isinstance(receiver, WebhookReceiver)
    return WebhookChannel(receiver.url, name)


WEBHOOK = MessengerEntry(
    receivers=(WebhookReceiver,),
    byte_limits=WEBHOOK_LIMITS,
    build=lambda deps, state: WebhookMessenger(),
    channel=webhook_channel,
)


@pytest.fixture
def echo() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server recording every JSON body posted to ``/hook``."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return JSONResponse({"id": str(len(received))})

    with ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        yield f"{server.base_url}/hook", received


def webhook_config(tmp_path: Path, url: str) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "webhook_auth": {"bearer_token": TOKEN},
        "delivery": {"initial_backoff": "100ms", "max_backoff": "300ms"},
        "receivers": {"hook": {"channel": "webhook", "url": url, "language": "en"}},
    }


def test_a_config_without_the_messenger_rejects_its_receivers(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"receivers\.hook: channel must be one of: app, appchat, robot, console$"
    ):
        parse_config(webhook_config(tmp_path, "http://127.0.0.1:9/hook"), {}, "t.toml")


def test_the_extra_messengers_receivers_are_validated_by_their_model(tmp_path: Path) -> None:
    data = webhook_config(tmp_path, "http://127.0.0.1:9/hook")
    data["receivers"]["hook"]["uri"] = "typo"
    with pytest.raises(ConfigError, match=r"receivers\.hook\.uri: unknown key"):
        parse_config(data, {}, "t.toml", receiver_models((WEBHOOK,)))


def test_two_messengers_cannot_claim_one_kind() -> None:
    class Impostor(ConsoleMessenger):
        kinds = ("webhook", "console")

    with pytest.raises(ValueError, match="console"):
        Messengers([ConsoleMessenger(), Impostor()])


def test_an_alertmanager_notification_reaches_the_webhook_messenger(
    tmp_path: Path, echo: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = echo
    config: Config = parse_config(webhook_config(tmp_path, url), {}, "t.toml", receiver_models((WEBHOOK,)))
    assert isinstance(config.receivers["hook"], WebhookReceiver)
    app = create_app(config, out=io.StringIO(), extra_messengers=(WEBHOOK,))
    with ServerThread(app) as server:
        response = httpx.post(
            f"{server.base_url}/alertmanager/hook",
            content=FIRING,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [message["receiver"] for message in received] == ["hook"]
    assert "E2EHighLatency" in received[0]["content"]
    assert len(received[0]["content"].encode()) <= 1000
