"""Scenario 3, token: how many ``gettoken`` calls 500 concurrent cold sends cost (target: 1).

A freshly started alertbridge (empty token cache) with ``delivery.concurrency``
at its maximum (256) gets 500 one-alert notifications at once (64 client
connections, all fired together). The first ``gettoken`` answer is delayed by
``TOKEN_DELAY`` seconds (a fault injected into the fake), so every send the
dispatcher starts meanwhile finds the cache cold and must wait for that one
fetch instead of starting its own: the window in which a cache without
single-flight would stampede. The metric is the fake's count of gettoken
requests once all 500 messages were delivered.

Each notification goes to its own receiver (``tok000``…``tok499``, one member
each): deliveries to one target are sent one at a time or merged into a
digest, so 500 notifications to one receiver would not be 500 concurrent
sends. One message per member also stays far below WeCom's 30 a minute, so
the run also shows that all 500 alerts arrive.
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
    ServerProcess,
    fake_messages,
    fake_stats,
    fake_wecom_process,
    log,
    work_dir,
)
from bench.payloads import token_notification

SENDS = 100 if QUICK else 500
TOKEN_DELAY = 0.5
WAIT_SECONDS = 60.0
_ALERT = re.compile(r"tok-\d{4}")


def _config() -> str:
    receivers = "".join(
        f'\n[receivers.tok{i:03d}]\nchannel = "app"\napp = "ops"\nto_user = ["tokuser{i:03d}"]\n'
        for i in range(SENDS)
    )
    return "\n[delivery]\nconcurrency = 256\n" + receivers


def _arrived(fake: ServerProcess) -> int:
    """How many of the alerts (``tok-0042``) are in delivered messages."""
    return len({m for message in fake_messages(fake) for m in _ALERT.findall(message.get("content") or "")})


async def _post_all(base_url: str, count: int) -> int:
    """Post ``count`` notifications concurrently; returns how many were not answered 200."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def post(seq: int) -> bool:
            try:
                response = await client.post(
                    f"{base_url}/alertmanager/tok{seq:03d}",
                    content=token_notification(seq),
                    headers={"Content-Type": "application/json"},
                )
            except httpx.HTTPError:
                return False
            return response.status_code == 200

        answers = await asyncio.gather(*(post(i) for i in range(count)))
    return sum(1 for ok in answers if not ok)


def run() -> ScenarioResult:
    result = ScenarioResult("token")
    with work_dir("token") as workdir, fake_wecom_process(workdir) as fake:
        httpx.post(
            f"{fake.base_url}/_fake/faults",
            json={"endpoint": "gettoken", "delay": TOKEN_DELAY, "times": 1},
            timeout=5,
        ).raise_for_status()
        with alertbridge_process(workdir, _config(), api_base=fake.base_url) as alertbridge:
            log(f"token: {SENDS} concurrent notifications to a cold alertbridge")
            failures = asyncio.run(_post_all(alertbridge.base_url, SENDS))
            deadline = time.monotonic() + WAIT_SECONDS
            delivered = _arrived(fake)
            while delivered < SENDS and time.monotonic() < deadline:
                time.sleep(0.5)
                delivered = _arrived(fake)
            stats = fake_stats(fake)
    calls = int(stats["gettoken_calls"])
    result.add(
        f"token: gettoken calls for {SENDS} concurrent cold sends",
        f"{calls} ({delivered}/{SENDS} alerts delivered)",
        "1",
        calls == 1 and delivered == SENDS and failures == 0,
    )
    if failures:
        result.notes.append(f"token: {failures} webhooks not answered 200")
    result.raw = {"sends": SENDS, "delivered": delivered, "webhook_failures": failures, "fake_stats": stats}
    return result
