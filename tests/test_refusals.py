"""Refused webhooks leave one rate-limited warning each: receiver, remote address, reason."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
import pytest

from alertbridge.app import create_app
from alertbridge.testing.server import ServerThread
from alertbridge.web.refusals import RefusalLog
from tests.ingest_rig import FIRING, TOKEN, ingest_config


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("webhook_refused")]


def test_every_refusal_status_is_logged_once_per_pair_and_never_the_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(ingest_config(tmp_path), out=io.StringIO())
    wrong = "Bearer wrong-token-Xy12"
    with caplog.at_level(logging.WARNING, logger="alertbridge"):
        with ServerThread(app) as running:

            def post(path: str, body: bytes = FIRING, **headers: str) -> int:
                headers.setdefault("Authorization", f"Bearer {TOKEN}")
                headers.setdefault("Content-Type", "application/json")
                url = f"{running.base_url}{path}"
                return httpx.post(url, content=body, headers=headers, timeout=10).status_code

            assert [post("/alertmanager/console", Authorization=wrong) for _ in range(3)] == [401] * 3
            assert post("/alertmanager/nope") == 404
            assert post("/alertmanager/console", b"{", **{"Content-Type": "text/plain"}) == 415
            assert post("/alertmanager/console", b"x" * (65 * 1024)) == 413
            assert post("/alertmanager/console", b"{nope") == 400
            during = refused_lines(caplog)
        after = refused_lines(caplog)
    assert len(during) == 5, during
    first = during[0]
    assert first.startswith(
        "webhook_refused source=alertmanager receiver=console remote=127.0.0.1 status=401"
    )
    assert "outcome=unauthorized suppressed=0 reason=missing or invalid credentials" in first
    for status, outcome in ((404, "unknown_receiver"), (415, "unsupported_media_type"), (413, "too_large")):
        assert any(f"status={status} outcome={outcome}" in line for line in during), status
    assert any("status=400 outcome=bad_payload" in line for line in during)
    # The two held-back 401s are reported at shutdown, so none goes uncounted.
    assert [line for line in after if line.startswith("webhook_refused_suppressed")] == [
        "webhook_refused_suppressed remote=127.0.0.1 outcome=unauthorized suppressed=2"
    ]
    assert not any("wrong-token" in line or TOKEN in line for line in after)


def test_the_next_line_after_the_interval_counts_the_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    refusals = RefusalLog(clock=clock)

    def refuse(remote: str = "10.0.0.1", outcome: str = "unauthorized", receiver: str = "ops") -> None:
        refusals.refused(
            source="alertmanager", receiver=receiver, remote=remote, status=401, outcome=outcome, reason="no"
        )

    with caplog.at_level(logging.WARNING, logger="alertbridge"):
        for _ in range(4):
            refuse()
            clock.now += 2  # 0, 2, 4, 6 s: one line, three held back
        refuse(remote="10.0.0.2")  # another address has its own budget
        refuse(outcome="unknown_receiver")  # and so has another reason
        clock.now = 1000.0 + 10
        refuse(receiver="bad\nname with spaces")
        lines = refused_lines(caplog)
    assert [line.split(" reason=")[0].split(" receiver=")[1] for line in lines] == [
        "ops remote=10.0.0.1 status=401 outcome=unauthorized suppressed=0",
        "ops remote=10.0.0.2 status=401 outcome=unauthorized suppressed=0",
        "ops remote=10.0.0.1 status=401 outcome=unknown_receiver suppressed=0",
        "bad?name?with?spaces remote=10.0.0.1 status=401 outcome=unauthorized suppressed=3",
    ]


def test_memory_is_bounded_by_forgetting_the_oldest_pairs(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    refusals = RefusalLog(clock=clock, max_keys=10)
    with caplog.at_level(logging.WARNING, logger="alertbridge"):
        for n in range(25):
            for _ in range(2):
                refusals.refused(
                    source="grafana", receiver="x", remote=f"10.0.0.{n}", status=404, outcome="o", reason="r"
                )
    assert refusals.pairs <= 10
    forgotten = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("webhook_refusals_forgotten")
    ]
    assert forgotten and all("suppressed=" in line for line in forgotten)
