"""Scenario 1b, open-loop ingest: webhooks at a fixed arrival rate, however fast the answers come.

wrk (scenario 1) is a closed loop: 15 connections, each sending its next
webhook when the last is answered, so a slow answer slows the senders and
the commits only ever batch what 15 connections have in flight. Real
senders do not wait for each other: here webhook ``i`` is due at
``start + i / RATE`` and is sent then (on a free keep-alive connection, or a
new one), and its latency is counted from when it was due, so a stall shows
as latency rather than as fewer requests (no coordinated omission). This is
where group commit is measured: requests overlap as much as the rate makes
them, and /metrics' group-commit counter gives the webhooks per commit.

alertbridge runs as in scenario 1 (SQLite on disk, one console receiver, its
dispatcher delivering on the same core), pinned to the server core; this
driver runs on the load core, with its own minimal keep-alive HTTP client
(httpx costs too much per request to keep up). The bodies are scenario 1's: three alerts,
unique fingerprints, 100 rotating groups. Informational: the issue sets no
target for this run.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

import httpx

from bench.alertbridge_serve import alertbridge_process
from bench.common import QUICK, ScenarioResult, log, percentile, work_dir
from bench.ingest import _ALERTBRIDGE_CONFIG

# Webhooks a second; BENCH_OPEN_RATE overrides. The default is below what one
# core accepts and delivers here (~1,200 a second with delivery), so the run
# measures latency, not a queue growing without bound: past capacity, latency
# grows with the run's length and the connection cap (server.max_connections)
# answers 503.
RATE = int(os.environ.get("BENCH_OPEN_RATE", "1000"))
SECONDS = 3 if QUICK else 10
WARMUP_SECONDS = 1
TIMEOUT = 10.0
# Reuse an idle connection only this long: below uvicorn's 5 s keep-alive (see _Connections).
_REUSE_SECONDS = 4.0


def body(n: int) -> bytes:
    """Scenario 1's notification (bench/post.lua): three firing alerts, unique fingerprints."""
    group = n % 100
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": f"Bench{group:03d}",
                "instance": f"web-{i}:9100",
                "job": "node",
                "severity": "critical",
            },
            "annotations": {
                "summary": f"web-{i} CPU 使用率 97%",
                "description": f"web-{i}:9100 的 CPU 使用率已连续 10 分钟超过 90%。",
            },
            "startsAt": "2026-11-29T02:05:30.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=node_cpu_usage%3E0.9",
            "fingerprint": f"ff{n:08x}{i:02x}",
        }
        for i in (1, 2, 3)
    ]
    notification = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="Bench{group:03d}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bench",
        "groupLabels": {"alertname": f"Bench{group:03d}"},
        "commonLabels": {"alertname": f"Bench{group:03d}", "job": "node", "severity": "critical"},
        "commonAnnotations": {"runbook_url": "https://runbooks.example.com/HighCPUUsage"},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": alerts,
    }
    return json.dumps(notification, ensure_ascii=False).encode("utf-8")


@dataclass(slots=True)
class OpenLoopRun:
    sent: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, from when each was due
    seconds: float = 0.0


class _Connections:
    """Keep-alive HTTP/1.1 connections to one server, lent one request at a time.

    A minimal client (asyncio streams, no parsing beyond status and
    Content-Length): httpx costs the load core several times more per request,
    enough to fall behind 2,000 a second.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        # (reader, writer, when it was last returned), most recently used last.
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An idle connection the server still keeps open, else a new one.

        uvicorn closes a connection idle for 5 s (``timeout_keep_alive``); a
        request written into one as it closes gets no answer. HTTP clients
        (Go's, Alertmanager's) do not reuse such a connection, so neither do we.
        """
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < _REUSE_SECONDS:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self._host, self._port)

    async def post(self, path: str, payload: bytes) -> int:
        """POST ``payload``; the status code (raises OSError/IncompleteReadError on a broken connection)."""
        reader, writer = await self._connection()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode("ascii")
            + payload
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        self._idle.append((reader, writer, time.monotonic()))
        return status

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()


async def _post(connections: _Connections, path: str, n: int, due: float, run: OpenLoopRun) -> None:
    try:
        ok = await asyncio.wait_for(connections.post(path, body(n)), TIMEOUT) == 200
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
        ok = False
    run.latencies.append(time.perf_counter() - due)
    if not ok:
        run.errors += 1


async def open_loop(
    host: str, port: int, path: str, rate: int, seconds: float, first: int = 0
) -> OpenLoopRun:
    """Send ``rate`` webhooks a second for ``seconds``, each when due; wait for every answer."""
    run = OpenLoopRun()
    connections = _Connections(host, port)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    total = int(rate * seconds)
    try:
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(connections, path, first + i, due, run)))
        await asyncio.gather(*tasks)
    finally:
        connections.close()
    run.sent = total
    run.seconds = time.perf_counter() - start
    return run


def _group_commits(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("alertbridge_outbox_group_commits_total "):
            return float(line.split()[1])
    return 0.0


def run() -> ScenarioResult:
    result = ScenarioResult("ingest-open")
    with work_dir("ingest-open") as workdir, alertbridge_process(workdir, _ALERTBRIDGE_CONFIG) as server:
        target = ("127.0.0.1", server.port, "/alertmanager/bench")
        asyncio.run(open_loop(*target, RATE, WARMUP_SECONDS, first=10_000_000))
        commits_before = _group_commits(server.base_url)
        measured = asyncio.run(open_loop(*target, RATE, SECONDS))
        commits = _group_commits(server.base_url) - commits_before
    lat = [x * 1000 for x in measured.latencies]
    p50, p99, worst = percentile(lat, 50), percentile(lat, 99), max(lat, default=0.0)
    achieved = measured.sent / measured.seconds if measured.seconds else 0.0
    per_commit = (measured.sent - measured.errors) / commits if commits else 0.0
    log(
        f"ingest-open: {measured.sent} webhooks due at {RATE}/s, done in {measured.seconds:.1f} s; "
        f"p50 {p50:.1f} ms p99 {p99:.1f} ms max {worst:.1f} ms; errors {measured.errors}; "
        f"{per_commit:.1f} webhooks per commit"
    )
    result.add(
        f"ingest open loop @{RATE:,} webhooks/s: latency p50 / p99 / max (from when due)",
        f"{p50:.1f} / {p99:.1f} / {worst:.1f} ms, {measured.errors} errors, {per_commit:.1f} webhooks per commit",
    )
    result.raw = {
        "rate": RATE,
        "seconds": SECONDS,
        "sent": measured.sent,
        "achieved_rate": achieved,
        "errors": measured.errors,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": worst,
        "group_commits": commits,
        "webhooks_per_commit": per_commit,
    }
    return result
