"""Scenario 2, storm: 10,000 alerts in 200 groups over 60 s to 5 members, WeCom's limits enforced.

Setup: the fake WeCom process (load core) enforces WeCom's per-member limits
(30 messages a minute, 1000 an hour, per app and member) by answering ok and
**silently dropping** the excess, as WeCom does. alertbridge (server core) has
one app receiver, ``storm``, with ``to_user`` = 5 members, markdown, defaults
for everything else.

Load: 200 groups of 50 alerts; group ``g`` is posted once, as one Alertmanager
notification holding all its 50 alerts, at ``g × 60 s / 200`` after the start
(one webhook every 0.3 s). Each alert has a unique ``instance`` (``s007-42``),
which the default template prints.

Measured (from the fake's records, each with its wall-clock receive time):

- visible: an alert is visible once its instance appears in a delivered (not
  dropped) message received by **each** of the 5 members; its visible time is
  the latest of the 5 first-receipts. Target: 100 %.
- messages per member per minute: for each member, the most messages alertbridge
  had WeCom accept (delivered + silently dropped) in any rolling 60 s window;
  the table shows the worst member. WeCom's limit, and the target: ≤ 30.
- drain time: storm start (first webhook sent) → last alert visible. Compared
  with a lower bound (``drain_bound``, see bench/README.md): the time the
  messages needed could not beat under WeCom's byte and rate limits.
  Target: drain ≤ 1.1 × bound.
- peak RSS of the alertbridge process (VmHWM). Target ≤ 150 MB.

``run_replicas`` is the same storm against three alertbridge replicas on one
durable PostgreSQL database (bench.postgres), the webhooks dealt to them in
turn (group g to replica g mod 3): WeCom's per-member budgets are reserved in
the shared store, so the same bound and the same limits apply, and the fake
must have dropped nothing (nothing exceeded a member's limits). Its peak RSS
is the largest replica's. Without PostgreSQL's binaries its rows say so.

The run ends when every alert is visible; or when alertbridge is done (no
pending outbox rows and nothing new at the fake for ``QUIET`` seconds); or
after ``GIVE_UP`` — then the table shows what was visible at that point.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.alertbridge_serve import AlertbridgeProcess, alertbridge_process, alertbridge_replicas
from bench.common import (
    QUICK,
    ScenarioResult,
    ServerProcess,
    fake_messages,
    fake_wecom_process,
    log,
    mib,
    rss_kib,
    work_dir,
)
from bench.payloads import storm_instance, storm_notification
from bench.postgres import missing, postgres_server
from bench.storm_analysis import (
    APP_CONTENT_LIMIT,
    MEMBERS,
    PER_MINUTE,
    StormAnalysis,
    analyse,
    drain_bound,
    messages_needed,
)

GROUPS = 20 if QUICK else 200
ALERTS_PER_GROUP = 50
SPREAD_SECONDS = 10.0 if QUICK else 60.0
REPLICAS = 3
# Seconds after the storm started: twice the drain bound of the last full run
# (258 messages a member → 8 min at 30 a minute; ~14 min if digests were 90 B/alert).
GIVE_UP = 180.0 if QUICK else 960.0
QUIET = 65.0  # longer than WeCom's minute window, so a rate-paced sender is never taken for done
POLL = 5.0

TARGET_VISIBLE = 100.0
TARGET_DRAIN_RATIO = 1.1
TARGET_PEAK_RSS_MB = 150.0


def _config() -> str:
    members = ", ".join(f'"{m}"' for m in MEMBERS)
    return f"""
[receivers.storm]
channel = "app"
app = "ops"
to_user = [{members}]
msgtype = "markdown"
"""


# ---- the run ---------------------------------------------------------------------


async def _post_storm(urls: Sequence[str], start: float) -> tuple[float, int]:
    """Post every group at its time, group g to ``urls[g mod n]``; returns (last post's offset
    from start, failed posts)."""
    failures = 0
    bodies = [storm_notification(g, ALERTS_PER_GROUP) for g in range(GROUPS)]
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(url: str, body: bytes) -> None:
            nonlocal failures
            try:
                response = await client.post(url, content=body, headers={"Content-Type": "application/json"})
                if response.status_code != 200:
                    failures += 1
            except httpx.HTTPError:
                failures += 1

        tasks = []
        for g, body in enumerate(bodies):
            delay = start + g * SPREAD_SECONDS / GROUPS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(urls[g % len(urls)], body)))
        last = time.monotonic() - start
        await asyncio.gather(*tasks)
    return last, failures


def _peak_kib(servers: Sequence[AlertbridgeProcess]) -> int:
    return max(rss_kib(server.pid, "VmHWM") for server in servers)


def _wait_for_drain(
    fake: ServerProcess,
    servers: Sequence[AlertbridgeProcess],
    expected: set[str],
    start_wall: float,
    start: float,
) -> tuple[StormAnalysis, str, int]:
    """Poll the fake until done (see the module docstring); returns the analysis, why it
    stopped, and the largest peak RSS of the alertbridge processes."""
    last_count, last_change = -1, time.monotonic()
    while True:
        delivered, dropped = fake_messages(fake), fake_messages(fake, "dropped")
        analysis = analyse(delivered, dropped, expected, start_wall)
        count = len(delivered) + len(dropped)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elapsed = now - start
        rss = " ".join(mib(rss_kib(server.pid)) for server in servers)
        log(
            f"storm t={elapsed:.0f}s visible {analysis.visible}/{analysis.expected} "
            f"messages delivered {len(delivered)} dropped {len(dropped)} rss {rss}"
        )
        if analysis.visible == analysis.expected:
            return analysis, "all visible", _peak_kib(servers)
        if elapsed >= GIVE_UP:
            return analysis, f"gave up after {GIVE_UP:.0f} s", _peak_kib(servers)
        # The replicas share one store: any of them can count what is left.
        if now - last_change >= QUIET and servers[0].pending_deliveries() in (0, None):
            return (
                analysis,
                f"alertbridge idle (no pending deliveries, nothing sent for {QUIET:.0f} s)",
                _peak_kib(servers),
            )
        time.sleep(POLL)


Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(servers: Sequence[ServerProcess]) -> Scraped:
    """/metrics of every alertbridge process, summed: {(name, sorted labels): value}."""
    total: Scraped = defaultdict(float)
    for server in servers:
        text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                total[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return total


@dataclass(slots=True)
class StormRun:
    """What one storm produced, before it becomes table rows."""

    analysis: StormAnalysis
    stopped: str
    peak_kib: int
    last_post: float
    failures: int
    elapsed: float
    scraped: Scraped = field(default_factory=dict)


def _storm(fake: ServerProcess, servers: Sequence[AlertbridgeProcess]) -> StormRun:
    """Post the storm to ``servers`` in turn and wait for the fake to have it all (or give up)."""
    expected = {storm_instance(g, a) for g in range(GROUPS) for a in range(ALERTS_PER_GROUP)}
    log(
        f"storm: {len(expected)} alerts in {GROUPS} groups over {SPREAD_SECONDS:.0f} s "
        f"to {len(MEMBERS)} members, {len(servers)} alertbridge process(es)"
    )
    start_wall, start = time.time(), time.monotonic()
    urls = [f"{server.base_url}/alertmanager/storm" for server in servers]
    last_post, failures = asyncio.run(_post_storm(urls, start))
    analysis, why, peak_kib = _wait_for_drain(fake, servers, expected, start_wall, start)
    elapsed = time.monotonic() - start
    return StormRun(analysis, why, peak_kib, last_post, failures, elapsed, _scrape(servers))


def _report(result: ScenarioResult, label: str, storm: StormRun) -> None:
    """The table rows (prefixed ``label``), the note and the raw numbers of one storm."""
    analysis = storm.analysis
    worst = max(MEMBERS, key=lambda m: analysis.per_member_bytes[m])
    bound = drain_bound(analysis.per_member_bytes[worst], storm.last_post)
    needed = messages_needed(analysis.per_member_bytes[worst])
    result.add(
        f"{label}: alerts visible to all 5 members",
        f"{analysis.visible_pct:.1f} % ({analysis.visible:,}/{analysis.expected:,})",
        f"{TARGET_VISIBLE:.0f} %",
        analysis.visible == analysis.expected and storm.failures == 0,
    )
    result.add(
        f"{label}: messages per member per rolling minute (max)",
        str(analysis.max_per_minute),
        f"≤ {PER_MINUTE}",
        analysis.max_per_minute <= PER_MINUTE,
    )
    result.add(
        f"{label}: messages over a member's limits (fake WeCom dropped)",
        str(analysis.dropped),
        "0",
        analysis.dropped == 0,
    )
    result.add(
        f"{label}: alerts a member received more than once (worst member)",
        str(analysis.repeated),
        "0",
        analysis.repeated == 0,
    )
    if analysis.last_visible_at is not None:
        ratio = analysis.last_visible_at / bound
        result.add(
            f"{label}: drain time / bound",
            f"{analysis.last_visible_at:.0f} s / {bound:.0f} s = {ratio:.2f}×",
            f"≤ {TARGET_DRAIN_RATIO}×",
            ratio <= TARGET_DRAIN_RATIO,
        )
    else:
        result.add(
            f"{label}: drain time / bound",
            f"not drained ({storm.stopped}, {storm.elapsed:.0f} s); bound {bound:.0f} s",
            f"≤ {TARGET_DRAIN_RATIO}×",
            False,
        )
    result.add(
        f"{label}: peak RSS of alertbridge" + (" (largest replica)" if label != "storm" else ""),
        mib(storm.peak_kib),
        f"≤ {TARGET_PEAK_RSS_MB:.0f} MB",
        storm.peak_kib / 1024 <= TARGET_PEAK_RSS_MB,
    )
    # What an operator's Prometheus would have seen: /metrics against the fake's own count.
    scraped = storm.scraped
    sent = scraped.get(
        ("alertbridge_messages_sent_total", (("channel", "app"), ("outcome", "sent"), ("receiver", "storm"))),
        0.0,
    )
    digests = scraped.get(("alertbridge_digests_sent_total", (("receiver", "storm"),)), 0.0)
    deferrals = scraped.get(("alertbridge_rate_limit_deferrals_total", (("receiver", "storm"),)), 0.0)
    received = analysis.per_member_accepted[worst]
    result.add(
        f"{label}: /metrics messages sent vs WeCom received",
        f"{sent:.0f} / {received} (digests {digests:.0f}, deferrals {deferrals:.0f})",
        "equal",
        sent == received,
    )
    result.notes.append(
        f"{label}: per member (worst) {analysis.per_member_accepted[worst]} messages accepted by WeCom, "
        f"{analysis.per_member_delivered[worst]} delivered, {analysis.per_member_bytes[worst]:,} content bytes "
        f"→ ≥ {needed} messages needed at {APP_CONTENT_LIMIT} B; silently dropped (all members): "
        f"{analysis.dropped}; webhook failures: {storm.failures}; stopped: {storm.stopped}"
    )
    result.raw = {
        "groups": GROUPS,
        "alerts_per_group": ALERTS_PER_GROUP,
        "spread_seconds": SPREAD_SECONDS,
        "last_post_at": storm.last_post,
        "webhook_failures": storm.failures,
        "stopped": storm.stopped,
        "elapsed": storm.elapsed,
        "visible": analysis.visible,
        "expected": analysis.expected,
        "last_visible_at": analysis.last_visible_at,
        "bound_seconds": bound,
        "messages_needed_worst_member": needed,
        "max_per_minute": analysis.max_per_minute,
        "per_member_accepted": dict(analysis.per_member_accepted),
        "per_member_delivered": dict(analysis.per_member_delivered),
        "per_member_bytes": dict(analysis.per_member_bytes),
        "dropped_member_messages": analysis.dropped,
        "repeated_alerts_worst_member": analysis.repeated,
        "peak_rss_kib": storm.peak_kib,
    }


def run() -> ScenarioResult:
    """The storm against one alertbridge process on its SQLite outbox."""
    result = ScenarioResult("storm")
    with (
        work_dir("storm") as workdir,
        fake_wecom_process(workdir) as fake,
        alertbridge_process(workdir, _config(), api_base=fake.base_url) as alertbridge,
    ):
        storm = _storm(fake, [alertbridge])
    _report(result, "storm", storm)
    return result


def run_replicas() -> ScenarioResult:
    """The storm against three replicas on one PostgreSQL database."""
    result = ScenarioResult("storm-replicas")
    label = f"storm, {REPLICAS} replicas on PostgreSQL"
    skipped = missing()
    if skipped is not None:
        result.add(f"{label}: drain time / bound", skipped)
        result.raw = {"postgres": skipped}
        return result
    with (
        work_dir("storm-replicas") as workdir,
        postgres_server() as postgres,
        fake_wecom_process(workdir) as fake,
        alertbridge_replicas(
            workdir, _config(), REPLICAS, store_url=postgres.create_database(), api_base=fake.base_url
        ) as replicas,
    ):
        storm = _storm(fake, replicas)
    _report(result, label, storm)
    result.raw["replicas"] = REPLICAS
    return result
