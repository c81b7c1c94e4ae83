"""Temporary media of every type: WeCom's rules checked before uploading
(media_rules.py), the same rules enforced by the fake over HTTP, uploads and
sends through the app and robot channels with media ids cached until shortly
before their 3-day expiry, and the fake's ``media/get``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from alertbridge.errors import PermanentDeliveryError
from alertbridge.message import Recipients
from alertbridge.messengers.wecom.app import AppChannel
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.errors import WeComAPIError
from alertbridge.messengers.wecom.media import DEFAULT_MAX_AGE
from alertbridge.messengers.wecom.media_rules import (
    MEDIA_RULES,
    MediaFile,
    MediaKind,
    MediaRefusal,
    MediaRejected,
    amr_duration,
    check_media,
)
from alertbridge.messengers.wecom.robot import RobotChannel
from alertbridge.testing.fake_wecom import (
    MEDIA_UPLOAD,
    MESSAGE_SEND,
    WEBHOOK_SEND,
    FakeApp,
    FakeWeCom,
    Fault,
    ManualClock,
)
from tests.image_server import PNG
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

APP = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr(SECRET))
TO = Recipients(to_user=("alice",))
MiB = 1024 * 1024
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100
PDF = b"%PDF-1.7\n" + b"report " * 50


def amr(seconds: float) -> bytes:
    """An AMR-NB file of ``seconds`` of 12.2 kbit/s frames (type 7: 32 bytes each, 20 ms)."""
    frame = bytes([7 << 3 | 0x04]) + b"\x00" * 31
    return b"#!AMR\n" + frame * round(seconds / 0.02)


# ---- the rules, locally ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "content_type", "filename"),
    [
        (MediaKind.IMAGE, PNG, "image/png", "panel.png"),
        (MediaKind.IMAGE, JPEG, "image/jpeg", "panel.jpg"),
        (MediaKind.VOICE, amr(3), "audio/amr", "panel.amr"),
        (MediaKind.VIDEO, MP4, "video/mp4", "panel.mp4"),
        (MediaKind.FILE, PDF, "application/octet-stream", "panel"),
    ],
)
def test_each_type_accepts_what_wecom_takes(
    kind: MediaKind, data: bytes, content_type: str, filename: str
) -> None:
    # The bytes decide the type and the extension WeCom shows, not the name given.
    media = check_media(kind, data, "panel")
    assert (media.kind, media.content_type, media.filename, media.size) == (
        kind,
        content_type,
        filename,
        len(data),
    )


def test_a_file_keeps_its_name_and_path_parts_are_dropped() -> None:
    assert check_media(MediaKind.FILE, PDF, "/tmp/out/report.pdf").filename == "report.pdf"
    assert check_media(MediaKind.IMAGE, PNG, "shot.png").filename == "shot.png"


@pytest.mark.parametrize("kind", list(MediaKind))
def test_every_type_refuses_empty_and_five_byte_files(kind: MediaKind) -> None:
    with pytest.raises(MediaRejected) as empty:
        check_media(kind, b"", "x")
    assert empty.value.refusal is MediaRefusal.EMPTY
    with pytest.raises(MediaRejected) as small:
        check_media(kind, b"#!AMR", "x")
    assert small.value.refusal is MediaRefusal.TOO_SMALL


@pytest.mark.parametrize(
    ("kind", "head", "limit"),
    [
        (MediaKind.IMAGE, PNG, 10 * MiB),
        (MediaKind.VOICE, b"#!AMR\n", 2 * MiB),
        (MediaKind.VIDEO, MP4, 10 * MiB),
        (MediaKind.FILE, PDF, 20 * MiB),
    ],
)
def test_every_type_has_its_byte_limit(kind: MediaKind, head: bytes, limit: int) -> None:
    assert MEDIA_RULES[kind].max_bytes == limit
    with pytest.raises(MediaRejected) as over:
        check_media(kind, head + b"\x00" * (limit + 1 - len(head)), "big")
    assert over.value.refusal is MediaRefusal.TOO_LARGE
    assert str(limit) in str(over.value)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (MediaKind.IMAGE, b"GIF89a" + b"\x00" * 40),
        (MediaKind.IMAGE, MP4),
        (MediaKind.VOICE, b"RIFF....WAVEfmt " + b"\x00" * 40),
        (MediaKind.VIDEO, b"\x1aE\xdf\xa3" + b"\x00" * 40),  # Matroska
    ],
)
def test_bytes_of_another_type_are_refused(kind: MediaKind, data: bytes) -> None:
    with pytest.raises(MediaRejected) as wrong:
        check_media(kind, data, "x.png")
    assert wrong.value.refusal is MediaRefusal.BAD_TYPE


def test_voice_length_is_estimated_from_amr_frames() -> None:
    assert amr_duration(amr(10)) == pytest.approx(10.0)
    # Wide-band frames (type 8: 61 bytes) count 20 ms each too; a cut-off frame does not count.
    wide = b"#!AMR-WB\n" + (bytes([8 << 3 | 0x04]) + b"\x00" * 60) * 100
    assert amr_duration(wide) == pytest.approx(2.0)
    assert amr_duration(wide[:-1]) == pytest.approx(1.98)
    check_media(MediaKind.VOICE, amr(59.9), "ok")
    with pytest.raises(MediaRejected) as long:
        check_media(MediaKind.VOICE, amr(61), "long")
    assert long.value.refusal is MediaRefusal.TOO_LONG


# ---- the fake enforces the same rules over HTTP --------------------------


@pytest.fixture
def fake(clock: ManualClock) -> FakeWeCom:
    return FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY], clock=clock)


@pytest.fixture
async def raw(wecom_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=wecom_url, timeout=5) as http:
        yield http


async def token_of(raw: httpx.AsyncClient) -> str:
    answer = (await raw.get("/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET})).json()
    return str(answer["access_token"])


@pytest.mark.parametrize(
    ("media_type", "data", "filename", "errcode"),
    [
        ("gif", PNG, "a.png", 40004),
        ("image", b"", "a.png", 44001),
        ("file", b"12345", "a.txt", 40006),
        ("image", PNG + b"\x00" * (10 * MiB), "a.png", 40009),
        ("video", MP4 + b"\x00" * (10 * MiB), "a.mp4", 40011),
        ("voice", b"#!AMR\n" + b"\x00" * (2 * MiB), "a.amr", 40006),
        ("file", b"\x00" * (20 * MiB + 1), "a.bin", 40006),
        ("image", b"GIF89a" + b"\x00" * 40, "a.png", 40005),
        ("voice", b"RIFF....WAVEfmt " + b"\x00" * 40, "a.amr", 40005),
        ("video", b"\x1aE\xdf\xa3" + b"\x00" * 40, "a.mp4", 40005),
    ],
)
async def test_the_fake_refuses_what_the_rules_refuse(
    raw: httpx.AsyncClient, media_type: str, data: bytes, filename: str, errcode: int
) -> None:
    answer = await raw.post(
        "/cgi-bin/media/upload",
        params={"access_token": await token_of(raw), "type": media_type},
        files={"media": (filename, data, "application/octet-stream")},
    )
    assert answer.json()["errcode"] == errcode


async def test_the_fake_robot_upload_takes_file_and_voice_only(
    raw: httpx.AsyncClient, fake: FakeWeCom
) -> None:
    async def upload(key: str, media_type: str, data: bytes) -> int:
        answer = await raw.post(
            "/cgi-bin/webhook/upload_media",
            params={"key": key, "type": media_type},
            files={"media": ("x", data, "application/octet-stream")},
        )
        return int(answer.json()["errcode"])

    assert await upload(ROBOT_KEY, "file", PDF) == 0
    assert await upload(ROBOT_KEY, "voice", amr(2)) == 0
    assert await upload(ROBOT_KEY, "image", PNG) == 40004
    assert await upload(ROBOT_KEY, "voice", PDF) == 40005
    assert await upload(ROBOT_KEY, "file", b"") == 44001
    assert await upload(ROBOT_KEY, "file", b"tiny") == 40006
    assert await upload("not-a-robot", "file", PDF) == 93000
    assert [m.type for m in fake.media.robot_uploads()] == ["file", "voice"]

    async def send(body: dict[str, object]) -> int:
        answer = await raw.post("/cgi-bin/webhook/send", params={"key": ROBOT_KEY}, json=body)
        return int(answer.json()["errcode"])

    file_id, voice_id = (m.media_id for m in fake.media.robot_uploads())
    assert await send({"msgtype": "file", "file": {"media_id": file_id}}) == 0
    assert await send({"msgtype": "voice", "voice": {"media_id": file_id}}) == 40007  # not a voice
    assert await send({"msgtype": "file", "file": {"media_id": "unknown"}}) == 40007
    fake.media.expire()
    assert await send({"msgtype": "voice", "voice": {"media_id": voice_id}}) == 40007


async def test_the_fake_serves_inbound_media_until_it_expires(
    raw: httpx.AsyncClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    put = await raw.post(
        "/_fake/inbound-media",
        params={"filename": "截图.png"},
        content=PNG,
        headers={"content-type": "image/png"},
    )
    media_id = put.json()["media_id"]
    token = await token_of(raw)
    got = await raw.get("/cgi-bin/media/get", params={"access_token": token, "media_id": media_id})
    assert got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert "filename*=UTF-8''%E6%88%AA%E5%9B%BE.png" in got.headers["content-disposition"]
    unknown = await raw.get("/cgi-bin/media/get", params={"access_token": token, "media_id": "nope"})
    assert unknown.json()["errcode"] == 40007
    no_token = await raw.get("/cgi-bin/media/get", params={"media_id": media_id})
    assert no_token.json()["errcode"] == 41001
    clock.advance(3 * 24 * 3600)
    fresh = await token_of(raw)  # the old token expired long before
    expired = await raw.get("/cgi-bin/media/get", params={"access_token": fresh, "media_id": media_id})
    assert expired.json()["errcode"] == 40007


# ---- uploads and sends through the channels --------------------------------


@pytest.fixture
async def client(wecom_url: str, clock: ManualClock) -> AsyncIterator[WeComClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield WeComClient(http, wecom_url, clock=clock)


@pytest.mark.parametrize(
    ("kind", "data"),
    [(MediaKind.IMAGE, PNG), (MediaKind.VOICE, amr(5)), (MediaKind.VIDEO, MP4), (MediaKind.FILE, PDF)],
)
async def test_the_app_sends_each_type_by_media_id(
    client: WeComClient, fake: FakeWeCom, kind: MediaKind, data: bytes
) -> None:
    channel = AppChannel(client, "ops", APP)
    await channel.send_media(check_media(kind, data, "report.pdf"), TO)
    (upload,) = fake.uploads()
    assert (upload.type, upload.size) == (kind, len(data))
    (sent,) = fake.messages(MESSAGE_SEND)
    assert sent.msgtype == kind
    assert sent.media_id == upload.media_id
    assert sent.to_user == ("alice",)


async def test_media_ids_are_reused_until_shortly_before_they_expire(
    client: WeComClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    channel = AppChannel(client, "ops", APP)
    report = check_media(MediaKind.FILE, PDF, "report.pdf")
    await channel.send_media(report, TO)
    await channel.send_media(report, TO)
    # The same bytes as another type are another upload (ids are per type).
    await channel.send_media(check_media(MediaKind.IMAGE, PNG, "a.png"), TO)
    await channel.send_media(check_media(MediaKind.FILE, PNG, "a.png"), TO)
    assert [u.type for u in fake.uploads()] == ["file", "image", "file"]
    clock.advance(DEFAULT_MAX_AGE + 1)  # 2.5 days: half a day before WeCom forgets the id
    await channel.send_media(report, TO)
    assert [u.type for u in fake.uploads()] == ["file", "image", "file", "file"]
    assert len(fake.messages(MESSAGE_SEND)) == 5


async def test_an_id_wecom_forgot_early_is_uploaded_again_once(client: WeComClient, fake: FakeWeCom) -> None:
    channel = AppChannel(client, "ops", APP)
    report = check_media(MediaKind.FILE, PDF, "report.pdf")
    await channel.send_media(report, TO)
    fake.expire_media()
    await channel.send_media(report, TO)
    first, second = fake.uploads()
    assert [m.media_id for m in fake.messages(MESSAGE_SEND)] == [first.media_id, second.media_id]


async def test_a_refused_upload_names_the_errcode(client: WeComClient, fake: FakeWeCom) -> None:
    # Bytes that slipped past the local rules (built by hand) meet WeCom's own.
    bogus = MediaFile(MediaKind.IMAGE, b"GIF89a" + b"\x00" * 40, "a.png", "image/png", "0" * 64)
    with pytest.raises(WeComAPIError) as refused:
        await client.upload_media("ops", APP, bogus)
    assert refused.value.errcode == 40005
    assert fake.request_count(MEDIA_UPLOAD) == 1


async def test_the_robot_sends_files_and_voices_by_its_own_media_id(
    client: WeComClient, fake: FakeWeCom
) -> None:
    robot = RobotChannel(client, SecretStr(ROBOT_KEY))
    report = check_media(MediaKind.FILE, PDF, "report.pdf")
    await robot.send_media(report)
    await robot.send_media(report)
    await robot.send_media(check_media(MediaKind.VOICE, amr(2), "v.amr"))
    await robot.send_media(check_media(MediaKind.IMAGE, PNG, "a.png"))
    uploads = fake.media.robot_uploads()
    assert [u.type for u in uploads] == ["file", "voice"]
    sent = fake.messages(WEBHOOK_SEND)
    assert [m.msgtype for m in sent] == ["file", "file", "voice", "image"]
    assert sent[0].body["file"] == {"media_id": uploads[0].media_id} == sent[1].body["file"]
    assert fake.uploads() == []  # the app's media/upload is not the robot's
    with pytest.raises(PermanentDeliveryError) as video:
        await robot.send_media(check_media(MediaKind.VIDEO, MP4, "v.mp4"))
    assert video.value.reason == "media_refused"

    # A cached id WeCom forgot early is uploaded again, once.
    fake.add_fault(WEBHOOK_SEND, Fault(errcode=40007, errmsg="invalid media_id"))
    await robot.send_media(report)
    assert [u.type for u in fake.media.robot_uploads()] == ["file", "voice", "file"]
    assert fake.messages(WEBHOOK_SEND)[-1].body["file"] == {
        "media_id": fake.media.robot_uploads()[-1].media_id
    }
