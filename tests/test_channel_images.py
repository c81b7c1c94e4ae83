"""Alert images through the app and robot channels, over real HTTP to the fake WeCom
and a loopback image server: the message first, then its images; media ids
reused by content; every image failure degrading to "message without image".

Also: the fake's media/upload and image-message checks, and which image URLs
the dispatcher attaches to a group's messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alertbridge.config import ImagesConfig
from alertbridge.delivery.compose import MAX_IMAGES
from alertbridge.delivery.compose import with_images as _with_images
from alertbridge.errors import PermanentDeliveryError
from alertbridge.images import FetchedImage, ImageFetcher, new_image_http_client
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Receipt
from alertbridge.messengers.console import ConsoleReceiver
from alertbridge.messengers.registry import byte_limit
from alertbridge.messengers.wecom.app import AppChannel
from alertbridge.messengers.wecom.client import WeComClient, quiet_http_loggers
from alertbridge.messengers.wecom.config import AppReceiver, RobotReceiver, WeComAppConfig
from alertbridge.messengers.wecom.errors import WeComTransportError
from alertbridge.messengers.wecom.media_rules import MediaKind, check_media
from alertbridge.messengers.wecom.robot import ROBOT_IMAGE_LIMIT, RobotChannel
from alertbridge.metrics import Metrics
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.stores import Delivery, DeliveryStatus
from alertbridge.testing.fake_wecom import (
    MEDIA_UPLOAD,
    MESSAGE_SEND,
    WEBHOOK_SEND,
    FakeApp,
    FakeWeCom,
    Fault,
    ManualClock,
)
from alertbridge.testing.server import SwappableApp
from tests.harness import AlertbridgeProcess, wait_until
from tests.image_server import BIG_PNG, JPEG, PNG, ImageServer, make_png
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET, wecom_toml

APP = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr(SECRET))
OTHER_APP = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID + 1, secret=SecretStr(SECRET + "-2"))
TO = Recipients(to_user=("alice",), to_party=("2",))
DAY = 24 * 3600.0
# A PNG just over the robot's 2 MB image limit (and under the fetcher's 5 MB).


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def message(images: tuple[str, ...] = (), channel: str = "app") -> RenderedMessage:
    return RenderedMessage(
        "markdown", "**CPU 告警** node-1 95%", byte_limit(channel, "markdown"), images=images
    )


class FailImageMessages:
    """Answers every *image* message (app or robot) with ``errcode``; the rest pass to ``app``."""

    def __init__(self, app: ASGIApp, errcode: int) -> None:
        self.app = app
        self.errcode = errcode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(("/message/send", "/webhook/send")):
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        body = b""
        while True:
            received = await receive()
            buffered.append(received)
            body += received.get("body", b"")
            if not received.get("more_body", False):
                break
        if json.loads(body).get("msgtype") == "image":
            await JSONResponse({"errcode": self.errcode, "errmsg": "injected"})(scope, receive, send)
            return

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


@pytest.fixture
def fake(clock: ManualClock) -> FakeWeCom:
    return FakeWeCom(
        [FakeApp(CORP_ID, SECRET, AGENT_ID), FakeApp(CORP_ID, SECRET + "-2", AGENT_ID + 1)],
        [ROBOT_KEY],
        clock=clock,
    )


@pytest.fixture
async def client(wecom_url: str, clock: ManualClock) -> AsyncIterator[WeComClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield WeComClient(http, wecom_url, clock=clock)


def images_config(**changes: object) -> ImagesConfig:
    values: dict[str, object] = {"allow": ["127.0.0.1"], "timeout": timedelta(seconds=3)}
    values.update(changes)
    return ImagesConfig.model_validate(values)


@pytest.fixture
async def fetcher(images: ImageServer) -> AsyncIterator[ImageFetcher]:
    images.reset()
    cfg = images_config()
    async with new_image_http_client(cfg) as http:
        yield ImageFetcher(cfg, http)


async def fetcher_with(**changes: object) -> tuple[ImageFetcher, httpx.AsyncClient]:
    cfg = images_config(**changes)
    http = new_image_http_client(cfg)
    return ImageFetcher(cfg, http), http


# ---- app channel --------------------------------------------------------------------


async def test_app_sends_the_message_then_the_image(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    receipt = await channel.send(message((f"{images.base_url}/png",)), TO)

    text, image = fake.messages(MESSAGE_SEND)
    assert receipt == Receipt(msgid=text.msgid)
    assert text.msgtype == "markdown"
    [upload] = fake.uploads()
    assert (upload.type, upload.filename, upload.sha256, upload.agent_id) == (
        "image",
        "alert.png",
        sha(PNG),
        AGENT_ID,
    )
    assert image.msgtype == "image" and image.body["image"] == {"media_id": upload.media_id}
    assert image.image_sha256 == sha(PNG)
    assert (image.to_user, image.to_party) == (("alice",), ("2",))
    assert "enable_duplicate_check" not in image.body
    assert (channel.images_sent, dict(channel.image_failures)) == (1, {})


async def test_app_jpeg_is_uploaded_as_jpg(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    await AppChannel(client, "ops-app", APP, images=fetcher).send(message((f"{images.base_url}/jpeg",)), TO)
    [upload] = fake.uploads()
    assert (upload.filename, upload.sha256) == ("alert.jpg", sha(JPEG))
    assert fake.messages(MESSAGE_SEND)[-1].image_sha256 == sha(JPEG)


async def test_app_images_arrive_in_order(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    urls = tuple(f"{images.base_url}{p}" for p in ("/png", "/jpeg", "/other.png"))
    await AppChannel(client, "ops-app", APP, images=fetcher).send(message(urls), TO)
    sent = fake.messages(MESSAGE_SEND)
    assert [m.msgtype for m in sent] == ["markdown", "image", "image", "image"]
    assert [m.image_sha256 for m in sent[1:]] == [sha(PNG), sha(JPEG), sha(make_png(3, 1))]


async def test_app_uploads_an_image_once(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    """The same bytes (even from another URL, or through another app of the corp) reuse the media id."""
    png = f"{images.base_url}/png"
    await AppChannel(client, "ops-app", APP, images=fetcher).send(message((png,)), TO)
    await AppChannel(client, "ops-app", APP, images=fetcher).send(message((png,)), TO)
    await AppChannel(client, "other-app", OTHER_APP, images=fetcher).send(
        message((f"{images.base_url}/to?url=/png",)), TO
    )
    [upload] = fake.uploads()
    image_messages = [m for m in fake.messages(MESSAGE_SEND) if m.msgtype == "image"]
    assert [m.media_id for m in image_messages] == [upload.media_id] * 3
    assert [m.agent_id for m in image_messages] == [AGENT_ID, AGENT_ID, AGENT_ID + 1]
    assert fake.request_count(MEDIA_UPLOAD) == 1
    assert (client.media_cache.hits, client.media_cache.misses) == (2, 1)


async def test_app_uploads_again_after_two_and_a_half_days(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer, clock: ManualClock
) -> None:
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    png = (f"{images.base_url}/png",)
    await channel.send(message(png), TO)
    clock.advance(2 * DAY)
    await channel.send(message(png), TO)
    assert len(fake.uploads()) == 1
    clock.advance(0.5 * DAY)
    await channel.send(message(png), TO)
    first, second = fake.uploads()
    assert first.sha256 == second.sha256
    assert fake.messages(MESSAGE_SEND)[-1].media_id == second.media_id
    assert channel.images_sent == 3


async def test_app_uploads_again_when_wecom_forgot_the_media(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    png = (f"{images.base_url}/png",)
    await channel.send(message(png), TO)
    fake.expire_media()  # WeCom dropped the id before our 2.5 days ran out
    await channel.send(message(png), TO)
    first, second = fake.uploads()
    assert [m.media_id for m in fake.messages(MESSAGE_SEND) if m.msgtype == "image"] == [
        first.media_id,
        second.media_id,
    ]
    assert (channel.images_sent, dict(channel.image_failures)) == (2, {})


async def test_upload_image_replays_a_rejected_token(client: WeComClient, fake: FakeWeCom) -> None:
    fake.add_fault(MEDIA_UPLOAD, Fault(errcode=40014))
    media_id = await client.upload_media("ops-app", APP, check_media(MediaKind.IMAGE, PNG, "alert.png"))
    assert [u.media_id for u in fake.uploads()] == [media_id]
    assert client.token_replays == 1 and fake.request_count(MEDIA_UPLOAD) == 2


async def test_upload_image_without_media_id_is_a_bad_response(client: WeComClient, fake: FakeWeCom) -> None:
    fake.add_fault(MEDIA_UPLOAD, Fault(errcode=0, errmsg="ok"))
    with pytest.raises(WeComTransportError) as caught:
        await client.upload_media("ops-app", APP, check_media(MediaKind.IMAGE, PNG, "alert.png"))
    assert caught.value.reason == "bad_response"


FETCH_FAILURES = [
    ("/status/404", {}, "http_error"),
    ("/html", {}, "bad_type"),
    ("/garbage", {}, "bad_type"),
    ("/redirect/9", {}, "too_many_redirects"),
    ("/declared-huge", {"max_bytes": 1000}, "too_large"),
    ("/streamed-huge", {"max_bytes": 10_000}, "too_large"),
    ("/slow", {"timeout": timedelta(milliseconds=300)}, "timeout"),
    ("/png", {"allow": []}, "blocked_address"),
]


@pytest.mark.parametrize(("path", "changes", "reason"), FETCH_FAILURES)
async def test_app_fetch_failures_degrade(
    client: WeComClient,
    fake: FakeWeCom,
    images: ImageServer,
    caplog: pytest.LogCaptureFixture,
    path: str,
    changes: dict[str, Any],
    reason: str,
) -> None:
    fetcher, http = await fetcher_with(**changes)
    async with http:
        channel = AppChannel(client, "ops-app", APP, images=fetcher)
        with caplog.at_level(logging.WARNING):
            receipt = await channel.send(message((f"{images.base_url}{path}",)), TO)
    [text] = fake.messages(MESSAGE_SEND)
    assert receipt.msgid == text.msgid and text.msgtype == "markdown"
    assert fake.uploads() == []
    assert (dict(channel.image_failures), channel.images_sent) == ({reason: 1}, 0)
    assert f"reason={reason}" in caplog.text and "host=127.0.0.1" in caplog.text


async def test_app_bad_url_degrades(client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher) -> None:
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    await channel.send(message(("file:///etc/passwd", "not a url")), TO)
    assert [m.msgtype for m in fake.messages(MESSAGE_SEND)] == ["markdown"]
    assert dict(channel.image_failures) == {"bad_url": 2}


@pytest.mark.parametrize("fault", [Fault(errcode=40009), Fault(errcode=45009), Fault(status=502)])
async def test_app_upload_failures_degrade(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer, fault: Fault
) -> None:
    fake.add_fault(MEDIA_UPLOAD, fault)
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    await channel.send(message((f"{images.base_url}/png",)), TO)
    assert [m.msgtype for m in fake.messages(MESSAGE_SEND)] == ["markdown"]
    assert dict(channel.image_failures) == {"upload_failed": 1}
    assert len(client.media_cache) == 0  # nothing cached for a failed upload


async def test_app_image_message_failure_degrades(
    wecom_slot: tuple[SwappableApp, str],
    client: WeComClient,
    fake: FakeWeCom,
    fetcher: ImageFetcher,
    images: ImageServer,
) -> None:
    slot, _ = wecom_slot
    slot.target = FailImageMessages(fake.app, 81013)
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    receipt = await channel.send(message((f"{images.base_url}/png",)), TO)
    assert receipt.msgid == fake.messages(MESSAGE_SEND)[0].msgid
    assert [m.msgtype for m in fake.messages(MESSAGE_SEND)] == ["markdown"]
    assert len(fake.uploads()) == 1
    assert dict(channel.image_failures) == {"send_failed": 1}


async def test_app_one_failed_image_does_not_stop_the_next(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    await channel.send(message((f"{images.base_url}/status/500", f"{images.base_url}/png")), TO)
    assert [m.msgtype for m in fake.messages(MESSAGE_SEND)] == ["markdown", "image"]
    assert (dict(channel.image_failures), channel.images_sent) == ({"http_error": 1}, 1)


class BrokenFetcher(ImageFetcher):
    def __init__(self) -> None:
        pass

    async def fetch(self, url: str) -> FetchedImage:
        raise RuntimeError("a bug")


async def test_app_unexpected_errors_degrade(
    client: WeComClient, fake: FakeWeCom, caplog: pytest.LogCaptureFixture
) -> None:
    channel = AppChannel(client, "ops-app", APP, images=BrokenFetcher())
    with caplog.at_level(logging.WARNING):
        await channel.send(message(("http://example.com/x.png",)), TO)
    assert [m.msgtype for m in fake.messages(MESSAGE_SEND)] == ["markdown"]
    assert dict(channel.image_failures) == {"internal": 1}
    assert "image_crashed" in caplog.text


async def test_app_message_failure_still_raises_and_skips_images(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    fake.add_fault(MESSAGE_SEND, Fault(errcode=81013))
    channel = AppChannel(client, "ops-app", APP, images=fetcher)
    with pytest.raises(PermanentDeliveryError):
        await channel.send(message((f"{images.base_url}/png",)), TO)
    assert images.paths == [] and fake.uploads() == []


async def test_app_without_a_fetcher_ignores_images(client: WeComClient, fake: FakeWeCom) -> None:
    channel = AppChannel(client, "ops-app", APP)
    await channel.send(message(("http://example.com/x.png",)), TO)
    assert [m.msgtype for m in fake.messages(MESSAGE_SEND)] == ["markdown"]
    assert dict(channel.image_failures) == {}


async def test_no_secret_or_url_query_in_logs(
    client: WeComClient,
    fake: FakeWeCom,
    fetcher: ImageFetcher,
    images: ImageServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet_http_loggers()  # as the app does: httpx logs every URL at INFO
    fake.add_fault(MEDIA_UPLOAD, Fault(errcode=40014), times=2)  # token rejected twice
    with caplog.at_level(logging.DEBUG):
        app = AppChannel(client, "ops-app", APP, images=fetcher)
        await app.send(message((f"{images.base_url}/png?X-Amz-Signature=sig-0123456789",)), TO)
        await app.send(message((f"{images.base_url}/status/403?token=query-secret-42",)), TO)
        robot = RobotChannel(client, SecretStr(ROBOT_KEY), images=fetcher)
        await robot.send(
            message((f"{images.base_url}/status/404?key=query-secret-43",), "robot"), Recipients()
        )
    assert dict(app.image_failures) == {"upload_failed": 1, "http_error": 1}
    logged = caplog.text
    for secret in (
        *fake.issued_tokens(),
        SECRET,
        ROBOT_KEY,
        "sig-0123456789",
        "query-secret-42",
        "query-secret-43",
    ):
        assert secret not in logged


# ---- robot channel ------------------------------------------------------------------


async def test_robot_sends_the_message_then_the_image(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    channel = RobotChannel(client, SecretStr(ROBOT_KEY), images=fetcher)
    await channel.send(message((f"{images.base_url}/png", f"{images.base_url}/jpeg"), "robot"), Recipients())
    text, png, jpeg = fake.messages(WEBHOOK_SEND)
    assert text.msgtype == "markdown"
    assert (png.msgtype, png.image_sha256, jpeg.image_sha256) == ("image", sha(PNG), sha(JPEG))
    assert png.body["image"] == {
        "base64": base64.b64encode(PNG).decode(),
        "md5": hashlib.md5(PNG).hexdigest(),
    }
    assert fake.uploads() == []  # robots send the bytes themselves
    assert (channel.images_sent, dict(channel.image_failures)) == (2, {})


async def test_robot_skips_images_over_2_mb(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    assert len(BIG_PNG) > ROBOT_IMAGE_LIMIT
    channel = RobotChannel(client, SecretStr(ROBOT_KEY), images=fetcher)
    await channel.send(message((f"{images.base_url}/big", f"{images.base_url}/png"), "robot"), Recipients())
    assert [(m.msgtype, m.image_sha256) for m in fake.messages(WEBHOOK_SEND)] == [
        ("markdown", ""),
        ("image", sha(PNG)),
    ]
    assert dict(channel.image_failures) == {"too_large": 1}


async def test_robot_fetch_failure_degrades(
    client: WeComClient, fake: FakeWeCom, fetcher: ImageFetcher, images: ImageServer
) -> None:
    channel = RobotChannel(client, SecretStr(ROBOT_KEY), images=fetcher)
    receipt = await channel.send(message((f"{images.base_url}/garbage",), "robot"), Recipients())
    assert receipt == Receipt()
    assert [m.msgtype for m in fake.messages(WEBHOOK_SEND)] == ["markdown"]
    assert dict(channel.image_failures) == {"bad_type": 1}


async def test_robot_image_message_failure_degrades(
    wecom_slot: tuple[SwappableApp, str],
    client: WeComClient,
    fake: FakeWeCom,
    fetcher: ImageFetcher,
    images: ImageServer,
) -> None:
    slot, _ = wecom_slot
    slot.target = FailImageMessages(fake.app, 45009)
    channel = RobotChannel(client, SecretStr(ROBOT_KEY), images=fetcher)
    await channel.send(message((f"{images.base_url}/png",), "robot"), Recipients())
    assert [m.msgtype for m in fake.messages(WEBHOOK_SEND)] == ["markdown"]
    assert dict(channel.image_failures) == {"send_failed": 1}


async def test_robot_unexpected_errors_degrade(client: WeComClient, fake: FakeWeCom) -> None:
    channel = RobotChannel(client, SecretStr(ROBOT_KEY), images=BrokenFetcher())
    await channel.send(message(("http://example.com/x.png",), "robot"), Recipients())
    assert [m.msgtype for m in fake.messages(WEBHOOK_SEND)] == ["markdown"]
    assert dict(channel.image_failures) == {"internal": 1}


# ---- the fake's media/upload ----------------------------------------------------------


@pytest.fixture
async def raw(client: WeComClient, wecom_slot: tuple[SwappableApp, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client on the fake (``client`` plugs the fake in)."""
    async with httpx.AsyncClient(base_url=wecom_slot[1], timeout=5) as http:
        yield http


async def token_of(raw: httpx.AsyncClient, secret: str = SECRET) -> str:
    answer = (await raw.get("/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": secret})).json()
    return str(answer["access_token"])


async def upload(
    raw: httpx.AsyncClient,
    token: str,
    data: bytes = PNG,
    *,
    filename: str = "panel.png",
    media_type: str = "image",
    field: str = "media",
) -> dict[str, Any]:
    params = {"access_token": token, "type": media_type}
    files = {field: (filename, data, "application/octet-stream")}
    answer: dict[str, Any] = (await raw.post("/cgi-bin/media/upload", params=params, files=files)).json()
    return answer


async def send_image(raw: httpx.AsyncClient, token: str, media_id: str, agent_id: int = AGENT_ID) -> int:
    body = {"touser": "alice", "msgtype": "image", "image": {"media_id": media_id}, "agentid": agent_id}
    answer = (await raw.post("/cgi-bin/message/send", params={"access_token": token}, json=body)).json()
    return int(answer["errcode"])


async def test_fake_upload_answers_like_wecom(raw: httpx.AsyncClient, fake: FakeWeCom) -> None:
    token = await token_of(raw)
    answer = await upload(raw, token)
    assert answer["errcode"] == 0 and answer["type"] == "image"
    assert isinstance(answer["media_id"], str) and answer["media_id"]
    assert isinstance(answer["created_at"], str) and answer["created_at"].isdigit()
    [record] = fake.uploads()
    assert (record.media_id, record.filename, record.size, record.sha256) == (
        answer["media_id"],
        "panel.png",
        len(PNG),
        sha(PNG),
    )
    assert (await raw.get("/_fake/uploads")).json()[0]["media_id"] == answer["media_id"]
    assert await send_image(raw, token, answer["media_id"]) == 0
    assert fake.messages(MESSAGE_SEND)[-1].image_sha256 == sha(PNG)


async def test_fake_upload_checks_the_token(raw: httpx.AsyncClient, fake: FakeWeCom) -> None:
    assert (await upload(raw, ""))["errcode"] == 41001
    assert (await upload(raw, "not-a-token"))["errcode"] == 40014
    token = await token_of(raw)
    fake.expire_tokens()
    assert (await upload(raw, token))["errcode"] == 42001


@pytest.mark.parametrize(
    ("kwargs", "errcode"),
    [
        ({"media_type": "gif"}, 40004),
        ({"media_type": ""}, 40004),
        ({"field": "file"}, 44001),
        ({"data": b""}, 44001),
        ({"data": PNG[:5]}, 40006),
        ({"data": PNG + b"\x00" * (10 * 1024 * 1024)}, 40009),
        ({"data": b"GIF89a" + b"\x00" * 64, "filename": "x.png"}, 40005),
        ({"filename": "panel.gif"}, 40005),
        ({"filename": "panel"}, 40005),
        ({"media_type": "voice", "data": b"#!AMR\n" + b"\x00" * (2 * 1024 * 1024)}, 40006),
    ],
)
async def test_fake_upload_rejects(
    raw: httpx.AsyncClient, fake: FakeWeCom, kwargs: dict[str, Any], errcode: int
) -> None:
    token = await token_of(raw)
    assert (await upload(raw, token, **kwargs))["errcode"] == errcode
    assert fake.uploads() == []


async def test_fake_upload_needs_multipart(raw: httpx.AsyncClient) -> None:
    token = await token_of(raw)
    answer = await raw.post(
        "/cgi-bin/media/upload", params={"access_token": token, "type": "image"}, content=PNG
    )
    assert answer.json()["errcode"] == 44001


async def test_fake_upload_accepts_jpeg_and_other_types(raw: httpx.AsyncClient) -> None:
    token = await token_of(raw)
    assert (await upload(raw, token, JPEG, filename="a.JPEG"))["errcode"] == 0
    assert (await upload(raw, token, b"any file content", filename="log.txt", media_type="file"))[
        "type"
    ] == "file"


async def test_fake_media_ids_expire_after_three_days(
    raw: httpx.AsyncClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    token = await token_of(raw)
    media_id = (await upload(raw, token))["media_id"]
    clock.advance(3 * DAY - 60)
    token = await token_of(raw)  # the first one expired meanwhile
    assert await send_image(raw, token, media_id) == 0
    fake.reset()  # media ids outlive a reset, as tokens do
    clock.advance(60)
    assert await send_image(raw, token, media_id) == 40007


async def test_fake_media_ids_are_shared_within_the_corp_only(
    raw: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    token = await token_of(raw)
    media_id = (await upload(raw, token))["media_id"]
    other = await token_of(raw, SECRET + "-2")
    assert await send_image(raw, other, media_id, AGENT_ID + 1) == 0
    fake.apps = (*fake.apps, FakeApp("ww-another-corp", "another-secret", 1000009))
    foreign = str(
        (
            await raw.get(
                "/cgi-bin/gettoken", params={"corpid": "ww-another-corp", "corpsecret": "another-secret"}
            )
        ).json()["access_token"]
    )
    assert await send_image(raw, foreign, media_id, 1000009) == 40007


@pytest.mark.parametrize("media_id", ["", "unknown-media-id"])
async def test_fake_image_message_needs_a_known_media_id(raw: httpx.AsyncClient, media_id: str) -> None:
    assert await send_image(raw, await token_of(raw), media_id) == 40007


async def test_fake_expire_media_over_http(raw: httpx.AsyncClient) -> None:
    token = await token_of(raw)
    media_id = (await upload(raw, token))["media_id"]
    assert (await raw.post("/_fake/expire-media")).json() == {"ok": True}
    assert await send_image(raw, token, media_id) == 40007


def robot_image(data: bytes, md5: str | None = None) -> dict[str, Any]:
    return {
        "msgtype": "image",
        "image": {"base64": base64.b64encode(data).decode(), "md5": md5 or hashlib.md5(data).hexdigest()},
    }


@pytest.mark.parametrize(
    "body",
    [
        robot_image(PNG, md5="0" * 32),
        robot_image(b"GIF89a" + b"\x00" * 64),
        robot_image(BIG_PNG),
        {"msgtype": "image", "image": {"base64": "not base64!", "md5": "0" * 32}},
        {"msgtype": "image", "image": {"md5": hashlib.md5(PNG).hexdigest()}},
    ],
)
async def test_fake_robot_image_checks(raw: httpx.AsyncClient, fake: FakeWeCom, body: dict[str, Any]) -> None:
    answer = (await raw.post("/cgi-bin/webhook/send", params={"key": ROBOT_KEY}, json=body)).json()
    assert answer["errcode"] == 40058
    assert fake.messages(WEBHOOK_SEND) == []


async def test_fake_robot_image_is_recorded(raw: httpx.AsyncClient, fake: FakeWeCom) -> None:
    body = robot_image(JPEG)
    body["image"]["md5"] = body["image"]["md5"].upper()
    answer = (await raw.post("/cgi-bin/webhook/send", params={"key": ROBOT_KEY}, json=body)).json()
    assert answer["errcode"] == 0
    assert fake.messages(WEBHOOK_SEND)[0].image_sha256 == sha(JPEG)


# ---- which images the dispatcher attaches -------------------------------------------

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def alert(name: str, image_url: str, status: Status = Status.FIRING) -> Alert:
    return Alert(
        status=status,
        labels={"alertname": name},
        annotations={},
        starts_at=T0,
        ends_at=None if status is Status.FIRING else T0,
        fingerprint=name,
        image_url=image_url,
    )


def delivery(*alerts: Alert) -> Delivery:
    group = AlertGroup(source="grafana", status=Status.FIRING, group_key="g", alerts=alerts)
    return Delivery(
        id=1,
        receiver="ops",
        channel="app",
        recipients=TO,
        group=group,
        request_id="r",
        accepted_at=T0,
        status=DeliveryStatus.PENDING,
        attempts=0,
        parts_sent=0,
        next_attempt_at=T0,
        last_error=None,
        finished_at=None,
    )


def parts(n: int) -> list[RenderedMessage]:
    return [RenderedMessage("markdown", f"part {i}", 2048, i, n) for i in range(1, n + 1)]


RECEIVERS: dict[str, AppReceiver | RobotReceiver | ConsoleReceiver] = {
    "app": AppReceiver(channel="app", app="ops-app", to_user=["alice"], images=True),
    "robot": RobotReceiver(channel="robot", robot_key=SecretStr(ROBOT_KEY), images=True),
    "console": ConsoleReceiver(channel="console", images=True),
}


@pytest.mark.parametrize("kind", RECEIVERS)
def test_dispatcher_attaches_distinct_firing_images_to_the_last_part(kind: str) -> None:
    group = delivery(
        alert("a", "http://g/1.png"),
        alert("b", ""),
        alert("c", "http://g/1.png"),
        alert("d", "http://g/2.png", Status.RESOLVED),
        alert("e", "http://g/3.png"),
        alert("f", "http://g/4.png"),
        alert("g", "http://g/5.png"),
    )
    first, last = _with_images(parts(2), group, RECEIVERS[kind])
    assert first.images == ()
    assert last.images == ("http://g/1.png", "http://g/3.png", "http://g/4.png")
    assert len(last.images) == MAX_IMAGES
    assert (last.content, last.part) == ("part 2", 2)


def test_dispatcher_attaches_nothing_unless_the_receiver_wants_images() -> None:
    group = delivery(alert("a", "http://g/1.png"))
    receiver = AppReceiver(channel="app", app="ops-app", to_user=["alice"])
    assert _with_images(parts(1), group, receiver) == parts(1)
    assert _with_images(parts(1), delivery(alert("a", "")), RECEIVERS["app"]) == parts(1)
    resolved = delivery(alert("a", "http://g/1.png", Status.RESOLVED))
    assert _with_images(parts(1), resolved, RECEIVERS["app"]) == parts(1)
    assert _with_images([], group, RECEIVERS["app"]) == []


# ---- end to end: alertbridge serve, a Grafana webhook with an image --------------------

GRAFANA_FIRING = Path(__file__).parent / "data" / "grafana" / "unified-firing.json"


def test_end_to_end_grafana_image_reaches_app_and_robot(tmp_path: Path, images: ImageServer) -> None:
    """A real ``alertbridge serve``: the Grafana alert's imageURL is fetched from the image
    server and posted after the message, for receivers with ``images = true`` only."""
    images.reset()
    fake = FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY])
    with fake.serve() as api_base:
        config = f"""
{wecom_toml(api_base)}
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["alice"]
images = true

[receivers.room]
channel = "robot"
robot_key = "{ROBOT_KEY}"
images = true

[receivers.quiet-room]
channel = "robot"
robot_key = "{ROBOT_KEY}"
"""
        process = AlertbridgeProcess(tmp_path, config).start()
        try:
            payload = json.loads(GRAFANA_FIRING.read_text(encoding="utf-8"))
            payload["alerts"][0]["imageURL"] = f"{images.base_url}/png?sig=e2e-signature-77"
            for receiver in ("oncall", "room", "quiet-room"):
                answer = httpx.post(f"{process.base_url}/grafana/{receiver}", json=payload, timeout=10)
                assert answer.status_code == 200, answer.text
            wait_until(lambda: len(fake.messages()) >= 5, what="messages and images")
            time.sleep(0.3)  # nothing more arrives
        finally:
            process.stop()
    app_messages = fake.messages(MESSAGE_SEND)
    assert [m.msgtype for m in app_messages] == ["markdown", "image"]
    assert app_messages[1].image_sha256 == sha(PNG) and app_messages[1].to_user == ("alice",)
    robot_messages = fake.messages(WEBHOOK_SEND)
    assert sorted(m.msgtype for m in robot_messages) == ["image", "markdown", "markdown"]
    assert [m.image_sha256 for m in robot_messages if m.msgtype == "image"] == [sha(PNG)]
    assert len(fake.uploads()) == 1 and len(images.paths) == 2  # one fetch per image receiver
    logged = process.stderr()
    assert "e2e-signature-77" not in logged and SECRET not in logged and ROBOT_KEY not in logged


def test_end_to_end_image_failures_leave_the_text(tmp_path: Path, images: ImageServer) -> None:
    """A hostile or broken imageURL (cloud metadata address, not an image, a 404)
    never costs the alert: the text with its link arrives, the image is skipped
    and the reason logged."""
    images.reset()
    fake = FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY])
    with fake.serve() as api_base:
        config = f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "{SECRET}"
[images]
timeout = "2s"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["alice"]
images = true
"""
        process = AlertbridgeProcess(tmp_path, config).start()
        try:
            base = json.loads(GRAFANA_FIRING.read_text(encoding="utf-8"))
            urls = [
                "http://169.254.169.254/latest/meta-data/",  # link-local: blocked
                f"{images.base_url}/png",  # loopback, not in [images] allow: blocked
                "file:///etc/passwd",  # not http(s)
            ]
            for i, url in enumerate(urls):
                payload = json.loads(json.dumps(base))
                payload["groupKey"] = f"image-failure-{i}"
                payload["alerts"][0]["imageURL"] = url
                payload["alerts"][0]["fingerprint"] = f"{i:016x}"
                payload["alerts"][0]["labels"]["instance"] = f"host-{i}"
                answer = httpx.post(f"{process.base_url}/grafana/oncall", json=payload, timeout=10)
                assert answer.status_code == 200, answer.text
            wait_until(lambda: len(fake.messages(MESSAGE_SEND)) >= 3, what="the three texts")
            time.sleep(0.5)
        finally:
            process.stop()
    assert [m.msgtype for m in fake.messages(MESSAGE_SEND)] == ["markdown"] * 3
    assert fake.uploads() == [] and images.paths == []
    logged = process.stderr()
    assert "blocked_address" in logged and "bad_url" in logged


async def test_image_token_and_partial_delivery_tallies_reach_metrics(
    wecom_slot: tuple[SwappableApp, str], fetcher: ImageFetcher, images: ImageServer, clock: ManualClock
) -> None:
    """What the client and channels count is exported on the registry they were given."""
    fake = FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY], users=["alice"], clock=clock)
    slot, url = wecom_slot
    slot.target = fake.app
    metrics = Metrics()
    png = (f"{images.base_url}/png",)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            client = WeComClient(http, url, clock=clock, metrics=metrics)
            app = AppChannel(client, "ops-app", APP, images=fetcher, metrics=metrics)
            robot = RobotChannel(client, SecretStr(ROBOT_KEY), images=fetcher, metrics=metrics)
            fake.add_fault(MESSAGE_SEND, Fault(errcode=40014))  # the cached token is refused once
            await app.send(message(png), Recipients(to_user=("alice", "ghost")))
            await app.send(message(png), Recipients(to_user=("alice",)))
            await robot.send(message((f"{images.base_url}/big",), "robot"), Recipients())
    finally:
        slot.target = None
    sample = metrics.registry.get_sample_value
    # The message and its image both named the unknown "ghost".
    assert sample("alertbridge_wecom_partial_deliveries_total", {"app": "ops-app"}) == 2
    assert sample("alertbridge_wecom_token_replays_total", {"app": "ops-app"}) == 1
    assert sample("alertbridge_wecom_media_cache_total", {"outcome": "miss"}) == 1
    assert sample("alertbridge_wecom_media_cache_total", {"outcome": "hit"}) == 1
    assert sample("alertbridge_images_total", {"channel": "app", "outcome": "sent"}) == 2
    assert sample("alertbridge_images_total", {"channel": "robot", "outcome": "too_large"}) == 1
