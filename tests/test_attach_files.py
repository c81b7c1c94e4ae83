"""``attach_files``: an app or robot receiver posts the files its alerts' annotations point
at (a report, a log) as ``file`` messages after the text — picked from the
firing alerts, fetched under the [images] rules, best effort — through a real
``alertbridge serve``, the loopback file server and the fake WeCom."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from alertbridge.delivery.compose import with_images
from alertbridge.message import RenderedMessage
from alertbridge.messengers.wecom.app import file_name_of
from alertbridge.messengers.wecom.config import MAX_ATTACHED_FILES, AppReceiver
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.stores import Delivery, DeliveryStatus
from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, FakeApp, FakeWeCom, Message
from alertbridge.testing.store_contract import T0
from tests.harness import AlertbridgeProcess, wait_until
from tests.image_server import JPEG, ImageServer
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET, wecom_toml

FIRING = json.loads(
    (Path(__file__).parent / "data" / "alertmanager" / "firing.json").read_text(encoding="utf-8")
)
RECEIVER = AppReceiver(channel="app", app="ops", to_user=["alice"], attach_files=["report_url", "log_url"])


def alert(name: str, status: Status = Status.FIRING, **annotations: str) -> Alert:
    return Alert(status, {"alertname": name}, annotations, T0, None, f"fp-{name}")


def delivery_of(*alerts: Alert) -> Delivery:
    group = AlertGroup(source="alertmanager", status=Status.FIRING, group_key="{}", alerts=alerts)
    return Delivery(
        id=1,
        receiver="oncall",
        channel="app",
        recipients=RECEIVER.recipients_for(group),
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


def test_the_firing_alerts_annotations_name_the_files_of_the_last_part() -> None:
    parts = [RenderedMessage("text", "part 1", 2048, 1, 2), RenderedMessage("text", "part 2", 2048, 2, 2)]
    d = delivery_of(
        alert("a", report_url="http://r/a.pdf", log_url="http://r/a.log"),
        alert("b", report_url="http://r/a.pdf"),  # the same file once
        alert("c", Status.RESOLVED, report_url="http://r/c.pdf"),
        alert("d", report_url=" http://r/d.pdf "),
        alert("e", report_url="http://r/e.pdf"),
    )
    first, last = with_images(parts, d, RECEIVER)
    assert first.files == ()
    assert last.files == ("http://r/a.pdf", "http://r/a.log", "http://r/d.pdf")
    assert len(last.files) == MAX_ATTACHED_FILES
    assert last.images == ()  # images = false: files only
    plain = AppReceiver(channel="app", app="ops", to_user=["alice"])
    assert with_images(parts, d, plain) == parts


def test_file_names_come_from_the_url_path() -> None:
    assert file_name_of("https://reports.example/daily/%E6%97%A5%E6%8A%A5.pdf?sig=x") == "日报.pdf"
    assert file_name_of("https://reports.example/") == "attachment"


def serve_and_post(
    tmp_path: Path, images: ImageServer, fake: FakeWeCom, receiver: str, endpoint: str
) -> list[Message]:
    """alertbridge with the TOML ``receiver`` (as ``[receivers.r]``) posts a group
    whose alerts point at a report and at a broken link; the messages that
    arrived at ``endpoint``. The broken link costs nothing but itself, and is
    logged without its query."""
    with fake.serve() as api_base:
        config = f"""
{wecom_toml(api_base)}
[receivers.r]
{receiver}
msgtype = "text"
attach_files = ["report_url"]
"""
        process = AlertbridgeProcess(tmp_path, config).start()
        try:
            payload = json.loads(json.dumps(FIRING))
            payload["alerts"][0]["annotations"]["report_url"] = f"{images.base_url}/jpeg?sig=signed-77"
            payload["alerts"][1]["annotations"]["report_url"] = f"{images.base_url}/status/404?sig=signed-78"
            answer = httpx.post(f"{process.base_url}/alertmanager/r", json=payload, timeout=10)
            assert answer.status_code == 200, answer.text
            wait_until(lambda: len(fake.messages(endpoint)) >= 2, what="the text and its file")
            time.sleep(0.3)  # nothing more arrives
        finally:
            process.stop()
    logged = process.stderr()
    assert "image_skipped" in logged and "http_error" in logged
    assert "signed-77" not in logged and "signed-78" not in logged and ROBOT_KEY not in logged
    return fake.messages(endpoint)


def test_end_to_end_the_report_follows_the_text(tmp_path: Path, images: ImageServer) -> None:
    fake = FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)])
    app = 'channel = "app"\napp = "ops"\nto_user = ["alice"]'
    text, report = serve_and_post(tmp_path, images, fake, app, MESSAGE_SEND)
    assert text.msgtype == "text" and report.msgtype == "file"
    (upload,) = fake.uploads()
    assert (upload.type, upload.filename, upload.size) == ("file", "jpeg", len(JPEG))
    assert report.media_id == upload.media_id and report.to_user == ("alice",)


def test_end_to_end_a_robot_posts_the_report_after_the_text(tmp_path: Path, images: ImageServer) -> None:
    """A robot uploads the file with its own webhook/upload_media and posts it by that media id."""
    fake = FakeWeCom([FakeApp(CORP_ID, SECRET, AGENT_ID)], [ROBOT_KEY])
    robot = f'channel = "robot"\nrobot_key = "{ROBOT_KEY}"'
    text, report = serve_and_post(tmp_path, images, fake, robot, WEBHOOK_SEND)
    assert text.msgtype == "text" and report.msgtype == "file"
    (upload,) = fake.media.robot_uploads()
    assert (upload.type, upload.filename, upload.data) == ("file", "jpeg", JPEG)
    assert report.body["file"] == {"media_id": upload.media_id}
    assert fake.uploads() == []  # the app's media/upload was not used
