"""PostgreSQL goes away under a running ``alertbridge serve`` mid-storm, then comes back.

The PostgreSQL twin of tests/test_store_unavailable.py, with a real server
(``alertbridge.testing.postgres_server``) stopped with ``pg_ctl stop -m fast``
while webhooks stream in from several threads, and started again on the same
port with the same data. What must hold, without restarting alertbridge:

* every webhook is answered 200 (stored) or 503 (not stored, Alertmanager
  retries), never anything else, and never 200 for something not stored;
* ``/readyz`` answers 503 while the database is down and 200 once it is back;
* every notification answered 200 — before, during or after the outage —
  reaches the fake WeCom exactly once (a send whose bookkeeping the outage cut
  off may be sent again, and only WeCom's duplicate check may hide that);
* the database password appears in no log line, answer or metric.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom
from alertbridge.testing.postgres_server import PostgresServer, require_postgres
from tests.harness import AlertbridgeProcess, events_in, marked_notification, wait_until

CORP_ID = "ww5a6b7c8d9e0f1a2b"
SECRET = "pg-outage-corp-secret-1f2e3d4c"
# One receiver per member: each member's WeCom budget (30/min) covers its share.
MEMBERS = ("zhangsan", "lisi", "wangwu", "zhaoliu")
THREADS = 4
PACE = 0.05  # seconds between one thread's posts


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped and started mid-test."""
    with PostgresServer(require_postgres()) as server:
        yield server


@pytest.fixture
def fake() -> Iterator[tuple[FakeWeCom, str]]:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=1000002)])
    with wecom.serve() as base_url:
        yield wecom, base_url


def config_body(api_base: str) -> str:
    receivers = "".join(
        f'[receivers.r{i}]\nchannel = "app"\napp = "ops"\nto_user = ["{member}"]\n'
        for i, member in enumerate(MEMBERS)
    )
    return f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = 1000002
secret = "${{SECRET}}"
[delivery]
initial_backoff = "500ms"
max_backoff = "1s"
{receivers}"""


class Storm:
    """``THREADS`` threads posting marked notifications round-robin over the receivers
    until stopped; every answer's status and body is kept."""

    def __init__(self, bridge: AlertbridgeProcess) -> None:
        self.bridge = bridge
        self.outcomes: dict[str, int] = {}
        self.bodies: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(THREADS)]

    def __enter__(self) -> Storm:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, thread: int) -> None:
        with httpx.Client(timeout=30) as client:
            index = 0
            while not self._stop.is_set():
                marker = f"mkT{thread}n{index:03d}x"
                receiver = f"r{(thread + index) % len(MEMBERS)}"
                response = client.post(
                    f"{self.bridge.base_url}/alertmanager/{receiver}",
                    content=marked_notification(marker, "PgOutage"),
                    headers={"Content-Type": "application/json"},
                )
                with self._lock:
                    self.outcomes[marker] = response.status_code
                    self.bodies.append(response.text)
                index += 1
                self._stop.wait(PACE)

    def answered(self, status: int) -> list[str]:
        with self._lock:
            return [marker for marker, got in self.outcomes.items() if got == status]


def sends_of(wecom: FakeWeCom, marker: str) -> int:
    return sum(marker in (m.content or "") for m in wecom.messages(MESSAGE_SEND))


def readyz(bridge: AlertbridgeProcess) -> httpx.Response:
    return httpx.get(f"{bridge.base_url}/readyz", timeout=30)


def test_database_restart_mid_storm_answers_503_then_recovers_losing_nothing(
    tmp_path: Path, postgres: PostgresServer, fake: tuple[FakeWeCom, str]
) -> None:
    wecom, api_base = fake
    url = postgres.create_database()
    templated = url.replace(quote(postgres.password, safe=""), "${ALERTBRIDGE_DB_PASSWORD}")
    bridge = AlertbridgeProcess(
        tmp_path,
        config_body(api_base),
        env={"SECRET": SECRET, "ALERTBRIDGE_DB_PASSWORD": postgres.password},
        store_url=templated,
    ).start()
    answers: list[str] = []
    try:
        with Storm(bridge) as storm:
            wait_until(lambda: len(storm.answered(200)) >= 20, 20, "webhooks accepted before the outage")
            postgres.stop_server()
            try:
                wait_until(lambda: readyz(bridge).status_code == 503, 20, "/readyz to fail")
                answers.append(readyz(bridge).text)
                wait_until(lambda: len(storm.answered(503)) >= 5, 20, "webhooks refused during the outage")
                assert bridge.proc is not None and bridge.proc.poll() is None, bridge.stderr()
                assert httpx.get(f"{bridge.base_url}/healthz", timeout=5).status_code == 200
                answers.append(httpx.get(f"{bridge.base_url}/metrics", timeout=30).text)
                # Long enough for rows failed at the cut to come due (backoff
                # 0.5-1 s) and for the dispatcher's claims to fail a few times.
                time.sleep(2)
                assert bridge.proc.poll() is None, bridge.stderr()
            finally:
                postgres.start_server()
            wait_until(lambda: readyz(bridge).status_code == 200, 30, "/readyz to recover")
            accepted_before = len(storm.answered(200))
            wait_until(
                lambda: len(storm.answered(200)) >= accepted_before + 20,
                30,
                "webhooks accepted after recovery",
            )
        answers.extend(storm.bodies)
        answers.append(httpx.get(f"{bridge.base_url}/metrics", timeout=30).text)

        assert set(storm.outcomes.values()) <= {200, 503}, storm.outcomes
        accepted = storm.answered(200)
        wait_until(
            lambda: all(sends_of(wecom, marker) >= 1 for marker in accepted),
            60,
            "every accepted notification delivered",
        )
        assert bridge.proc is not None and bridge.proc.poll() is None, bridge.stderr()
    finally:
        bridge.stop()
    log = bridge.stderr()
    assert events_in(log, "webhook_not_stored"), log
    assert "Application shutdown complete" in log, log

    refused = storm.answered(503)
    for marker in accepted:
        assert sends_of(wecom, marker) == 1, marker
    # A 503 means "not stored", with one exception no client can avoid: a
    # COMMIT the server applied but whose answer the shutdown cut off. Such a
    # notification may go out (once); Alertmanager's retry of it is then a
    # duplicate within the dedup window. Nothing refused goes out twice.
    assert all(sends_of(wecom, marker) <= 1 for marker in refused)
    assert sum(sends_of(wecom, marker) for marker in refused) <= THREADS
    assert {m.reason for m in wecom.dropped()} <= {"duplicate"}, wecom.dropped()

    # The password, raw or as written in the URL, in no output and no answer.
    output = log + bridge.stdout() + "".join(answers)
    for form in {postgres.password, quote(postgres.password, safe="")}:
        assert form not in output
