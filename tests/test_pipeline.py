"""The whole path as users run it: ``alertbridge serve`` (a real process) →
outbox → WeCom client → the fake WeCom over HTTP.

Covers: app, robot and console delivery; split messages arriving in order;
the outbox surviving a kill -9 with pending deliveries; retry of transient
errcodes and dead letters for permanent ones; the CLI's outbox commands; and
no secret in anything the process printed.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from alertbridge.testing.fake_wecom import (
    MESSAGE_SEND,
    WEBHOOK_SEND,
    FakeApp,
    FakeWeCom,
    Fault,
)
from tests.harness import AlertbridgeProcess, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

DATA = Path(__file__).parent / "data" / "alertmanager"
FIRING = json.loads((DATA / "firing.json").read_text(encoding="utf-8"))

WEBHOOK_TOKEN = "webhook-token-Q1w2E3r4"


@pytest.fixture
def fake(serve_wecom: Callable[[FakeWeCom], str]) -> tuple[FakeWeCom, str]:
    """The shared corp's fake WeCom that knows only zhangsan and lisi."""
    wecom = FakeWeCom(
        apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)],
        robot_keys=[ROBOT_KEY],
        users=["zhangsan", "lisi"],
    )
    return wecom, serve_wecom(wecom)


def config_body(api_base: str, **delivery: str) -> str:
    lines = [
        f'{k} = "{v}"' for k, v in {"initial_backoff": "100ms", "max_backoff": "300ms", **delivery}.items()
    ]
    return f"""
[webhook_auth]
bearer_token = "${{WEBHOOK_TOKEN}}"

[wecom]
api_base = "{api_base}"
timeout = "3s"

[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{WECOM_SECRET}}"

[delivery]
{chr(10).join(lines)}

[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan", "lisi"]
msgtype = "markdown"

[receivers.ghosts]
channel = "app"
app = "ops"
to_user = ["nobody"]
msgtype = "text"

[receivers.sre-room]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
msgtype = "markdown"

[receivers.room-text]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
msgtype = "text"
[receivers.room-text.mention]
keys = ["team"]
users = {{ payments = ["zhangsan"] }}
mobiles = {{ payments = ["13800000000"] }}

[receivers.room-md]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
msgtype = "markdown"
[receivers.room-md.mention]
keys = ["team"]
users = {{ payments = ["zhangsan", "lisi"] }}

[receivers.oncall-by-team]
channel = "app"
app = "ops"
to_user = ["lisi"]
[receivers.oncall-by-team.extra_recipients]
keys = ["team"]
users = {{ payments = ["zhangsan"] }}

[receivers.console]
channel = "console"
msgtype = "text"
language = "en"
"""


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., AlertbridgeProcess]]:
    started: list[AlertbridgeProcess] = []

    def run(api_base: str, **delivery: str) -> AlertbridgeProcess:
        process = AlertbridgeProcess(
            tmp_path,
            config_body(api_base, **delivery),
            env={"WEBHOOK_TOKEN": WEBHOOK_TOKEN, "WECOM_SECRET": SECRET, "ROBOT_KEY": ROBOT_KEY},
        )
        started.append(process)
        return process.start()

    yield run
    for process in started:
        process.kill()


def post(process: AlertbridgeProcess, receiver: str, payload: object) -> httpx.Response:
    return httpx.post(
        f"{process.base_url}/alertmanager/{receiver}",
        json=payload,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        timeout=10,
    )


def cli(process: AlertbridgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", *args, "-c", str(process.config_path)],
        capture_output=True,
        text=True,
        env=process.env,
        timeout=60,
        cwd=process.workdir,
    )


def assert_no_secrets(process: AlertbridgeProcess, wecom: FakeWeCom) -> None:
    printed = process.stdout() + process.stderr()
    for secret in (SECRET, ROBOT_KEY, WEBHOOK_TOKEN, *wecom.issued_tokens()):
        assert secret not in printed


def test_app_robot_and_console_delivery(fake, start) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    process = start(base_url)
    for receiver in ("oncall", "sre-room", "console"):
        assert post(process, receiver, FIRING).status_code == 200

    wait_until(lambda: len(wecom.messages()) == 2, what="app and robot messages")
    app_message = wecom.messages(MESSAGE_SEND)[0]
    assert app_message.agent_id == AGENT_ID
    assert set(app_message.to_user) == {"zhangsan", "lisi"}
    assert app_message.msgtype == "markdown"
    assert app_message.content is not None and "E2EHighLatency" in app_message.content
    robot_message = wecom.messages(WEBHOOK_SEND)[0]
    assert robot_message.robot_key == ROBOT_KEY
    assert robot_message.content is not None and "api-2:9100" in robot_message.content
    printed = process.wait_for_stdout("E2EHighLatency")
    assert "[FIRING:2]" in printed  # the console receiver renders in English
    assert wecom.gettoken_calls == 1
    assert_no_secrets(process, wecom)


def test_mentions_from_labels_in_both_robot_formats_and_app_recipients(fake, start) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    process = start(base_url)
    for receiver in ("room-text", "room-md", "oncall-by-team"):
        assert post(process, receiver, FIRING).status_code == 200  # alerts carry team="payments"
    wait_until(lambda: len(wecom.messages()) == 3, what="three messages")
    robot = {m.msgtype: m for m in wecom.messages(WEBHOOK_SEND)}
    assert robot["text"].mentioned == ("zhangsan",)
    assert robot["text"].mentioned_mobiles == ("13800000000",)
    assert (robot["markdown"].content or "").rstrip().endswith("<@zhangsan> <@lisi>")
    [app_message] = wecom.messages(MESSAGE_SEND)
    assert set(app_message.to_user) == {"lisi", "zhangsan"}


def test_identical_resend_is_not_shown_twice(fake, start) -> None:  # type: ignore[no-untyped-def]
    """An HA pair (or a crash between "sent" and "marked sent") sends the same
    message twice; WeCom's duplicate check, which we request, hides the second."""
    wecom, base_url = fake
    process = start(base_url, dedup_window="0s")  # let both copies through to WeCom
    assert post(process, "oncall", FIRING).status_code == 200
    assert post(process, "oncall", FIRING).status_code == 200
    wait_until(lambda: wecom.request_count(MESSAGE_SEND) == 2, what="both sends")
    wait_until(lambda: len(wecom.dropped()) == 1, what="the duplicate dropped")
    assert len(wecom.messages(MESSAGE_SEND)) == 1
    assert wecom.dropped()[0].reason == "duplicate"


def test_ha_peers_copies_of_a_notification_are_stored_once(fake, start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Alertmanager HA peers each send the same notification, differing only in
    externalURL; alertbridge stores and sends it once. A change is new."""
    wecom, base_url = fake
    process = start(base_url)
    peer_b = {**FIRING, "externalURL": "http://alertmanager-1.test:9093"}
    first = post(process, "oncall", FIRING)
    second = post(process, "oncall", peer_b)
    assert first.status_code == second.status_code == 200
    assert first.json()["delivery"] == second.json()["delivery"]
    assert (first.json()["status"], second.json()["status"]) == ("accepted", "duplicate")
    resolved_one = {
        **FIRING,
        "alerts": [
            {**FIRING["alerts"][0], "status": "resolved", "endsAt": "2026-11-29T12:30:00Z"},
            FIRING["alerts"][1],
        ],
    }
    third = post(process, "oncall", resolved_one)
    assert third.json()["delivery"] != first.json()["delivery"]
    wait_until(lambda: wecom.request_count(MESSAGE_SEND) == 2, what="two sends")
    time.sleep(0.5)
    assert wecom.request_count(MESSAGE_SEND) == 2
    with sqlite3.connect(process.db_path) as db:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 2


def test_big_group_is_split_and_parts_arrive_in_order(fake, start) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    process = start(base_url)
    template = FIRING["alerts"][0]
    alerts = []
    for i in range(40):
        alert = json.loads(json.dumps(template))
        alert["labels"]["instance"] = f"node-{i:02d}.example.internal:9100"
        alert["annotations"]["description"] = "磁盘使用率超过阈值，请尽快处理。" * 3
        alert["fingerprint"] = f"{i:016x}"
        alerts.append(alert)
    assert post(process, "oncall", {**FIRING, "alerts": alerts}).status_code == 200

    def all_parts() -> bool:
        messages = wecom.messages(MESSAGE_SEND)
        return bool(messages) and f"/{len(messages)})" in (messages[-1].content or "")

    wait_until(all_parts, what="every part of the split group")
    messages = wecom.messages(MESSAGE_SEND)
    assert len(messages) > 1
    for number, message in enumerate(messages, start=1):
        assert message.content is not None
        assert len(message.content.encode()) <= 2048
        assert f"({number}/{len(messages)})" in message.content
    text = "".join(m.content or "" for m in messages)
    for i in range(40):
        assert f"node-{i:02d}.example.internal:9100" in text


def test_pending_deliveries_survive_kill_9(fake, start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    # WeCom is down: every send fails with 502, so accepted deliveries stay pending.
    wecom.set_fault_rate(MESSAGE_SEND, Fault(status=502), 1.0)
    process = start(base_url)
    for i in range(5):
        payload = {**FIRING, "groupKey": f"group-{i}", "commonLabels": {"alertname": f"Crash{i}"}}
        payload["alerts"] = [{**FIRING["alerts"][0], "labels": {"alertname": f"Crash{i}", "instance": "x"}}]
        assert post(process, "oncall", payload).status_code == 200
    wait_until(lambda: wecom.request_count(MESSAGE_SEND) >= 5, what="failing attempts")
    process.kill()
    assert wecom.messages() == []

    wecom.clear_faults()
    restarted = start(base_url)
    wait_until(lambda: len(wecom.messages(MESSAGE_SEND)) == 5, what="redelivery after restart")
    names = sorted(m.content.split("Crash")[1][0] for m in wecom.messages(MESSAGE_SEND) if m.content)
    assert names == ["0", "1", "2", "3", "4"]
    time.sleep(0.5)
    assert len(wecom.messages(MESSAGE_SEND)) == 5  # each exactly once
    assert_no_secrets(restarted, wecom)


@pytest.mark.parametrize(
    "fault",
    [Fault(errcode=-1), Fault(errcode=45033), Fault(status=502), Fault(delay=5.0)],
    ids=["busy", "concurrency-limit", "http-502", "timeout"],
)
def test_transient_failures_are_retried_until_delivered(fake, start, fault: Fault) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    wecom.add_fault(MESSAGE_SEND, fault, times=2)
    process = start(base_url)
    assert post(process, "oncall", FIRING).status_code == 200
    wait_until(lambda: len(wecom.messages(MESSAGE_SEND)) == 1, timeout=30, what="delivery after retries")
    assert wecom.request_count(MESSAGE_SEND) == 3
    listing = cli(process, "outbox", "list")
    assert listing.returncode == 0
    assert " sent " in listing.stdout


def test_frequency_limit_defers_the_retry_for_the_blocked_window(fake, start) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    wecom.add_fault(MESSAGE_SEND, Fault(errcode=45009, errmsg="api freq out of limit"), times=1)
    process = start(base_url)
    assert post(process, "oncall", FIRING).status_code == 200

    def pending_with_error() -> bool:
        return any(
            " pending " in line and "45009" in line
            for line in cli(process, "outbox", "list").stdout.splitlines()
        )

    wait_until(pending_with_error, what="a rescheduled delivery")
    # WeCom blocks for the whole window: no retry comes back within seconds.
    time.sleep(1.5)
    assert wecom.request_count(MESSAGE_SEND) == 1
    assert "dead" not in cli(process, "outbox", "list", "--dead").stdout


def test_expired_token_is_refreshed_and_the_send_replayed(fake, start) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    process = start(base_url)
    assert post(process, "oncall", FIRING).status_code == 200
    wait_until(lambda: len(wecom.messages(MESSAGE_SEND)) == 1)
    wecom.expire_tokens()
    other = {**FIRING, "alerts": [{**FIRING["alerts"][0], "labels": {"alertname": "Other", "instance": "y"}}]}
    assert post(process, "oncall", other).status_code == 200
    wait_until(lambda: len(wecom.messages(MESSAGE_SEND)) == 2)
    assert wecom.gettoken_calls == 2


def test_permanent_failures_become_dead_letters_and_can_be_retried(fake, start) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    wecom.add_fault(MESSAGE_SEND, Fault(errcode=60020, errmsg="not allow to access from your ip"), times=1)
    process = start(base_url)
    assert post(process, "oncall", FIRING).status_code == 200
    # "nobody" is not a member: WeCom answers 81013 and retrying cannot help.
    assert post(process, "ghosts", FIRING).status_code == 200

    def dead_letters() -> list[str]:
        listing = cli(process, "outbox", "list", "--dead")
        return [line for line in listing.stdout.splitlines() if " dead " in line]

    wait_until(lambda: len(dead_letters()) == 2, what="two dead letters")
    rows = "\n".join(dead_letters())
    assert "81013" in rows or "recipient" in rows
    assert "60020" in rows or "trusted" in rows.lower() or "可信" in rows
    assert "可信IP" in process.stderr() or "trusted IP" in process.stderr()
    assert wecom.messages() == []
    assert wecom.request_count(MESSAGE_SEND) == 2  # no retries of permanent failures

    oncall_id = next(line.split()[0] for line in dead_letters() if "oncall" in line)
    retried = cli(process, "outbox", "retry", oncall_id)
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: len(wecom.messages(MESSAGE_SEND)) == 1, what="retried dead letter")
    assert cli(process, "outbox", "retry", "99999").returncode == 1
    assert_no_secrets(process, wecom)


def test_deliveries_older_than_max_age_are_dead_lettered(fake, start) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake
    wecom.set_fault_rate(MESSAGE_SEND, Fault(errcode=-1), 1.0)
    process = start(base_url, max_age="1s")
    assert post(process, "oncall", FIRING).status_code == 200

    def dead() -> bool:
        return "gave up after" in cli(process, "outbox", "list", "--dead").stdout

    wait_until(dead, what="dead letter after max_age")
    assert wecom.messages() == []
