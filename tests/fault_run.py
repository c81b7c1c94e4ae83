"""The WeCom fault run: WeCom misbehaving on every front at once, against a
real ``alertbridge serve``, captured whole (see tests/test_faults.py for what
the faults are and what must hold).

It happens once per session: conftest's session-scoped ``fault_run`` fixture
runs it for tests/test_faults.py and tests/test_secrets_in_logs.py, which
greps its logs for credentials.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from alertbridge.config import load_config
from alertbridge.testing.fake_wecom import (
    GETTOKEN,
    MESSAGE_SEND,
    WEBHOOK_SEND,
    FakeApp,
    FakeWeCom,
    Fault,
)
from tests.harness import AlertbridgeProcess, wait_until

SEED = 20_240_601
CORP_ID = "wwfa17c0ffee5eed01"
AGENT_ID = 1000002
CORP_SECRET = "fault-corp-secret-Q7x2Lp9v"
WEBHOOK_TOKEN = "fault-webhook-token-Zr4Kd81m"
CALLBACK_TOKEN = "faultCbToken8Hn2"
AES_KEY = "oGd486RNMkkrVQZqGeXWEFsKTy1C82mTi5xPNKQ5fy4"
ROBOT_KEYS = {"room-a": "fault-robot-key-a-Tq93Wm0e", "room-b": "fault-robot-key-b-Hs27Nc5j"}
# Receiver -> WeCom recipients (app receivers) or None (robots).
APP_RECEIVERS = {"oncall-a": ["zhangsan"], "oncall-b": ["lisi", "wangwu"], "oncall-c": ["zhaoliu"]}
PER_RECEIVER = 8  # × 5 receivers = 40 notifications; under 20/min per robot and 30/min per member

TIMEOUT = 1.0  # [wecom] timeout, seconds
STALL = 2.5  # a "timeout" fault holds the request this long: well past TIMEOUT
TOKEN_LIFETIME = 30  # expires_in the fake announces
REVOKE_EVERY = 3.0  # seconds between revocations of every token (42001 on next use)
POST_EVERY = 0.4  # seconds between posts: the app traffic spans several revocations (16 s)
QUEUE_LENGTH = 500  # faults drawn per endpoint; more than the run uses
RATE_LIMIT_BURSTS = (range(0, 3), range(6, 9))  # robot request numbers answered 45009
DEADLINE = 90.0  # seconds from the first post until the last delivery


def draw_faults(rng: random.Random, count: int) -> list[Fault]:
    """The fault (or pass, ``Fault()``) for each of the next ``count`` requests:
    30 % errcode -1, 10 % HTTP 502, 5 % a stall past the client's timeout."""
    plan: list[Fault] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.30:
            plan.append(Fault(errcode=-1, errmsg="system busy"))
        elif roll < 0.40:
            plan.append(Fault(status=502))
        elif roll < 0.45:
            plan.append(Fault(delay=STALL))
        else:
            plan.append(Fault())
    return plan


def robot_faults(rng: random.Random, count: int) -> list[Fault]:
    """The same mix for ``webhook/send``, with bursts of 45009 early in the run
    (early, because a 45009 makes alertbridge wait a minute before retrying)."""
    plan = draw_faults(rng, count)
    for burst in RATE_LIMIT_BURSTS:
        for index in burst:
            plan[index] = Fault(errcode=45009, errmsg="api freq out of limit")
    return plan


def bridge_config(api_base: str) -> str:
    """The TOML (after [server] and [store], which the harness writes) of the fault run."""
    apps = "".join(
        f'[receivers.{name}]\nchannel = "app"\napp = "ops"\nto_user = {json.dumps(users)}\n'
        for name, users in APP_RECEIVERS.items()
    )
    robots = "".join(
        f'[receivers.{name}]\nchannel = "robot"\nrobot_key = "${{ROBOT_KEY_{name[-1].upper()}}}"\n'
        for name in ROBOT_KEYS
    )
    return f"""
[webhook_auth]
bearer_token = "${{WEBHOOK_TOKEN}}"
[wecom]
api_base = "{api_base}"
timeout = "{int(TIMEOUT * 1000)}ms"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{CORP_SECRET}}"
token = "${{CALLBACK_TOKEN}}"
encoding_aes_key = "${{AES_KEY}}"
[delivery]
initial_backoff = "200ms"
max_backoff = "2s"
concurrency = 8
{apps}{robots}"""


def bridge_env() -> dict[str, str]:
    return {
        "CORP_SECRET": CORP_SECRET,
        "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        "AES_KEY": AES_KEY,
        **{f"ROBOT_KEY_{name[-1].upper()}": key for name, key in ROBOT_KEYS.items()},
    }


@dataclass(frozen=True, slots=True)
class Notification:
    marker: str
    receiver: str
    source: str  # "alertmanager" or "grafana"


def notifications() -> list[Notification]:
    """Forty distinct notifications (distinct, so the outbox's dedup window keeps them all);
    every other one comes in through the Grafana endpoint."""
    receivers = [*APP_RECEIVERS, *ROBOT_KEYS]
    return [
        Notification(
            marker=f"FaultProbe{index:02d}x{SEED % 9973:04d}",
            receiver=receivers[index % len(receivers)],
            source="grafana" if index % 2 else "alertmanager",
        )
        for index in range(PER_RECEIVER * len(receivers))
    ]


def payload(notification: Notification) -> dict[str, object]:
    """A one-alert webhook body whose alertname and summary carry the marker."""
    now = datetime.now(UTC).isoformat()
    alert: dict[str, object] = {
        "status": "firing",
        "labels": {"alertname": notification.marker, "severity": "critical"},
        "annotations": {"summary": f"{notification.marker} under WeCom faults"},
        "startsAt": now,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.test/graph",
        "fingerprint": hashlib.sha256(notification.marker.encode()).hexdigest()[:16],
    }
    body: dict[str, object] = {
        "receiver": "wecom",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": notification.marker},
        "commonLabels": {"alertname": notification.marker},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "groupKey": f'{{}}:{{alertname="{notification.marker}"}}',
        "truncatedAlerts": 0,
    }
    if notification.source == "grafana":
        alert["values"] = {"A": 1}
        return {**body, "version": "1", "orgId": 1, "state": "alerting", "title": notification.marker}
    return {**body, "version": "4"}


@contextmanager
def revoking_tokens(fake: FakeWeCom, every: float) -> Iterator[list[int]]:
    """Revoke every issued token each ``every`` seconds in a thread, as WeCom
    may before ``expires_in`` runs out; yields a one-item list counting revocations."""
    stop = threading.Event()
    count = [0]

    def run() -> None:
        while not stop.wait(every):
            fake.expire_tokens()
            count[0] += 1

    thread = threading.Thread(target=run, name="token-revoker", daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class FaultRun:
    """Everything a test needs from the run, captured before the processes went away."""

    notifications: list[Notification]
    delivered: list[tuple[str, str]]  # (endpoint, content) of every delivered message
    dropped: list[tuple[str, str, str]]  # (endpoint, content, reason)
    requests: dict[str, int]
    queued: dict[str, int]
    revocations: int
    issued_tokens: list[str]
    elapsed: float
    statuses: Counter[str]
    dead_listing: str
    stderr: str
    stdout: str
    secrets: list[str]


def run_fault_suite(workdir: Path) -> FaultRun:
    """Serve the faulty fake, run alertbridge against it, post the notifications
    and wait for all of them; everything is captured so the tests (and the
    secrets grep) can inspect the run after both servers are gone."""
    rng = random.Random(SEED)
    fake = FakeWeCom(
        apps=[FakeApp(corp_id=CORP_ID, secret=CORP_SECRET, agent_id=AGENT_ID)],
        robot_keys=ROBOT_KEYS.values(),
        token_lifetime=TOKEN_LIFETIME,
    )
    plans = {
        GETTOKEN: draw_faults(rng, QUEUE_LENGTH),
        MESSAGE_SEND: draw_faults(rng, QUEUE_LENGTH),
        WEBHOOK_SEND: robot_faults(rng, QUEUE_LENGTH),
    }
    for endpoint, plan in plans.items():
        for fault in plan:
            fake.add_fault(endpoint, fault)
    sent = notifications()
    markers = [n.marker for n in sent]
    with fake.serve() as api_base:
        bridge = AlertbridgeProcess(workdir, bridge_config(api_base), env=bridge_env()).start()
        try:
            with (
                revoking_tokens(fake, REVOKE_EVERY) as revocations,
                httpx.Client(
                    base_url=bridge.base_url,
                    headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
                    timeout=10,
                ) as http,
            ):
                started = time.monotonic()
                for notification in sent:
                    response = http.post(
                        f"/{notification.source}/{notification.receiver}", json=payload(notification)
                    )
                    assert response.status_code == 200, response.text
                    time.sleep(POST_EVERY)

                def all_delivered() -> bool:
                    contents = [m.content or "" for m in fake.messages()]
                    return all(any(marker in c for c in contents) for marker in markers)

                wait_until(all_delivered, timeout=DEADLINE + 30, what="every notification delivered")
                elapsed = time.monotonic() - started
                # Let anything still in flight (a duplicate re-send, a late retry) land.
                time.sleep(1.5)
            statuses = _statuses(bridge.db_path)
            listing = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "alertbridge",
                    "outbox",
                    "list",
                    "--dead",
                    "-c",
                    str(bridge.config_path),
                ],
                capture_output=True,
                text=True,
                env=bridge.env,
                check=True,
                timeout=30,
            ).stdout
        finally:
            bridge.stop()
        return FaultRun(
            notifications=sent,
            delivered=[(m.endpoint, m.content or "") for m in fake.messages()],
            dropped=[(m.endpoint, m.content or "", m.reason) for m in fake.dropped()],
            requests={endpoint: fake.request_count(endpoint) for endpoint in plans},
            queued={endpoint: len(plan) for endpoint, plan in plans.items()},
            revocations=revocations[0],
            issued_tokens=fake.issued_tokens(),
            elapsed=elapsed,
            statuses=statuses,
            dead_listing=listing,
            stderr=bridge.stderr(),
            stdout=bridge.stdout(),
            secrets=load_config(bridge.config_path, bridge.env).secrets(),
        )


def _statuses(db_path: Path) -> Counter[str]:
    with sqlite3.connect(db_path) as db:
        return Counter(
            {
                status: count
                for status, count in db.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
            }
        )
