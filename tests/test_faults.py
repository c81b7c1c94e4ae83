"""WeCom misbehaving on every front at once, against a real ``alertbridge serve``.

The fake WeCom answers errcode -1 (system busy) to 30 % of all calls, HTTP
502 to 10 %, stalls 5 % past the configured ``[wecom] timeout``, revokes
every access token every few seconds (42001 on the next use) and throws
bursts of 45009 (frequency limit) at the robots. Forty notifications across
three app receivers and two robots must all arrive — each exactly once, none
dead-lettered — within a bounded time. Rate limits are not what is tested:
per member and per robot the counts stay under WeCom's 30 and 20 a minute.

The fake holds one fault *rate* per endpoint, so the mix is a seeded,
pre-drawn queue of faults per endpoint (``Fault()``, with nothing set, lets
a request through). The queue is longer than the run needs, and the test
checks that it never ran dry: every request of the run faced the mix.

The run (tests/fault_run.py) happens once per session (conftest's ``fault_run``)
and its logs are kept: tests/test_secrets_in_logs.py greps them for credentials.
"""

from __future__ import annotations

from collections import Counter

from alertbridge.testing.fake_wecom import (
    MESSAGE_SEND,
    WEBHOOK_SEND,
)
from tests.fault_run import (
    DEADLINE,
    ROBOT_KEYS,
    FaultRun,
)


def test_every_notification_is_delivered_exactly_once(fault_run: FaultRun) -> None:
    for notification in fault_run.notifications:
        endpoint = WEBHOOK_SEND if notification.receiver in ROBOT_KEYS else MESSAGE_SEND
        copies = [c for e, c in fault_run.delivered if notification.marker in c]
        assert len(copies) == 1, (notification, copies)
        assert [e for e, c in fault_run.delivered if notification.marker in c] == [endpoint]
        # Nor did WeCom see it twice and drop the second as a duplicate.
        assert not [d for d in fault_run.dropped if notification.marker in d[1]], notification
    assert fault_run.dropped == []


def test_nothing_is_dead_lettered(fault_run: FaultRun) -> None:
    assert fault_run.statuses == Counter({"sent": len(fault_run.notifications)})
    assert fault_run.dead_listing.splitlines()[-1] == "(none)", fault_run.dead_listing


def test_delivery_is_bounded_in_time(fault_run: FaultRun) -> None:
    # A 45009 makes alertbridge wait a full minute (WeCom's window) before the
    # retry; everything else retries within max_backoff (2 s).
    assert fault_run.elapsed < DEADLINE, fault_run.elapsed


def test_the_faults_really_happened(fault_run: FaultRun) -> None:
    """Delivery under faults proves nothing unless the faults hit: every kind left its trace."""
    for endpoint, count in fault_run.requests.items():
        # Every request drew from the seeded queue, none ran on a clean fake.
        assert 0 < count < fault_run.queued[endpoint], (endpoint, count)
    logs = fault_run.stderr
    retries = [line for line in logs.splitlines() if "delivery_retry" in line]
    for reason in ("server_busy", "server_error", "timeout", "rate_limited"):
        assert any(f"error={reason}:" in line for line in retries), (reason, logs[-3000:])
    assert any("in=60.0s error=rate_limited" in line for line in retries)  # 45009 waits the window out
    assert fault_run.revocations >= 5
    rejected = [line for line in logs.splitlines() if "wecom_token_rejected" in line]
    assert len(rejected) >= 3 and all("errcode=42001" in line for line in rejected), rejected
    # Tokens were fetched again and again (revocations, the 15 s proactive refresh).
    assert len(fault_run.issued_tokens) >= 4
    assert "delivery_dead" not in logs
    assert "Traceback" not in logs
