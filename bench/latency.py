"""Scenario 4, latency: webhook sent → message received by the fake WeCom, at 100 alerts/s.

One alert per webhook, 100 webhooks a second (open loop: each is sent at its
scheduled time whether or not earlier ones were answered) for ``SECONDS``.
Each alert is its own group with a unique ``instance`` (``lat-000123``).

WeCom allows 30 messages a minute per member, and 100/s to one member would
be dropped (or, with alertbridge's rate budgets, queued) after the first 30,
which would measure the limit and not alertbridge. So alertbridge gets 100 app
receivers ``lat00``…``lat99``, each with its own member, and webhook ``i``
goes to receiver ``i mod 100``: every member gets one message a second at most
and 20 in a 20 s run, below the limit.

Latency of an alert = the fake's wall-clock receive time of the message
containing it (``Message.timestamp``) − the wall-clock time just before its
webhook was sent. That includes the webhook's own commit, so it is the user's
view: "Alertmanager sent it" → "WeCom has it". The fake runs in its own
process on the load core; both clocks are this machine's ``time.time()``.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from bench.alertbridge_serve import alertbridge_process
from bench.common import (
    QUICK,
    ScenarioResult,
    fake_messages,
    fake_wecom_process,
    log,
    percentile,
    work_dir,
)
from bench.payloads import latency_notification

RATE = 100  # alerts (= webhooks) per second
SECONDS = 5 if QUICK else 20
RECEIVERS = 100
TARGET_P99_MS = 50.0
SETTLE_SECONDS = 15.0  # how long to wait for the last messages after the last webhook

_SEQ = re.compile(r"lat-(\d{6})")


def _config() -> str:
    return "".join(
        f'\n[receivers.lat{r:02d}]\nchannel = "app"\napp = "ops"\nto_user = ["latuser{r:02d}"]\n'
        f'msgtype = "markdown"\n'
        for r in range(RECEIVERS)
    )


async def _post_all(base_url: str, count: int) -> tuple[dict[int, float], dict[int, float], int]:
    """Send ``count`` webhooks at ``RATE``/s; returns (seq → wall time sent,
    seq → wall time answered 200, failures)."""
    sent_at: dict[int, float] = {}
    answered_at: dict[int, float] = {}
    failures = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def post(seq: int) -> None:
            nonlocal failures
            body = latency_notification(seq)
            url = f"{base_url}/alertmanager/lat{seq % RECEIVERS:02d}"
            sent_at[seq] = time.time()
            try:
                response = await client.post(url, content=body, headers={"Content-Type": "application/json"})
                if response.status_code == 200:
                    answered_at[seq] = time.time()
                else:
                    failures += 1
            except httpx.HTTPError:
                failures += 1

        # Warm the connection pool so the first second does not pay TCP set-up.
        await asyncio.gather(*(client.get(f"{base_url}/healthz") for _ in range(16)))
        start = time.monotonic()
        tasks = []
        for seq in range(count):
            delay = start + seq / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(seq)))
        await asyncio.gather(*tasks)
    return sent_at, answered_at, failures


def run() -> ScenarioResult:
    result = ScenarioResult("latency")
    count = RATE * SECONDS
    with (
        work_dir("latency") as workdir,
        fake_wecom_process(workdir) as fake,
        alertbridge_process(workdir, _config(), api_base=fake.base_url) as alertbridge,
    ):
        log(f"latency: {count} webhooks at {RATE}/s to {RECEIVERS} receivers")
        sent_at, answered_at, failures = asyncio.run(_post_all(alertbridge.base_url, count))
        deadline = time.monotonic() + SETTLE_SECONDS
        received: dict[int, float] = {}
        while time.monotonic() < deadline:
            received = {}
            for message in fake_messages(fake):
                for seq in _SEQ.findall(message.get("content") or ""):
                    received.setdefault(int(seq), float(message["timestamp"]))
            if len(received) >= count:
                break
            time.sleep(0.5)
        dropped = len(fake_messages(fake, "dropped"))

    latencies = [(received[s] - sent_at[s]) * 1000 for s in sent_at if s in received]
    missing = count - len(latencies)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    answers = [(answered_at[s] - sent_at[s]) * 1000 for s in answered_at]
    result.add(
        f"latency webhook → WeCom p50 / p99 @{RATE} alerts/s",
        f"{p50:.1f} / {p99:.1f} ms" + (f" ({missing} of {count} never arrived)" if missing else ""),
        f"p99 ≤ {TARGET_P99_MS:.0f} ms",
        p99 <= TARGET_P99_MS and missing == 0 and failures == 0,
    )
    result.add(
        "latency webhook answered (200) p50 / p99 (part of the above)",
        f"{percentile(answers, 50):.1f} / {percentile(answers, 99):.1f} ms",
    )
    if failures or dropped:
        result.notes.append(f"latency: {failures} webhooks failed, {dropped} messages dropped by the fake")
    result.raw = {
        "rate": RATE,
        "seconds": SECONDS,
        "receivers": RECEIVERS,
        "sent": count,
        "received": len(latencies),
        "webhook_failures": failures,
        "dropped_by_fake": dropped,
        "p50_ms": p50,
        "p90_ms": percentile(latencies, 90),
        "p99_ms": p99,
        "max_ms": max(latencies, default=float("nan")),
        "answer_p50_ms": percentile(answers, 50),
        "answer_p99_ms": percentile(answers, 99),
    }
    return result
