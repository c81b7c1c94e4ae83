"""Scenario 1, ingest: webhook throughput of alertbridge vs a bare Starlette app, on SQLite and PostgreSQL.

``wrk`` (on the load core, 3 threads × 5 keep-alive connections) posts a
3-alert Alertmanager notification, a new one each request (bench/post.lua),
to ``POST /alertmanager/bench``:

- baseline: ``bench.baseline_app``, same uvicorn settings, only ``request.json()``.
- durable floor: ``bench.floor_app``, the baseline plus a JSON check and an
  fsynced group commit of the body into one SQLite table: what a 200 that
  means "stored" costs at the least, with nothing of alertbridge's own work.
- alertbridge on SQLite: the real ``alertbridge serve`` process with the SQLite
  outbox on disk (every 200 is answered after an fsynced commit) and one
  ``console`` receiver whose output goes to /dev/null. Its dispatcher renders
  and "sends" every accepted notification on the same core while wrk runs, as
  it would in production; that is part of the cost of accepting.
- alertbridge on PostgreSQL, one process: the same, with ``[store] url`` on a
  fresh database of one durable PostgreSQL (bench.postgres, fsync on, pinned
  to the server core like everything under test).
- three replicas on PostgreSQL: three such processes on one database, wrk's
  threads pointed at them in turn (a client-side round robin, 5 connections
  each). All three share the server core with PostgreSQL: the ratio to one
  process measures what sharing the database costs, not scale-out over cores.

Rounds run every side in that order, each on freshly started processes in a
fresh directory (a fresh database), after a short warm-up whose numbers are
discarded; a side is stopped before the next starts, so leftover dispatching
never overlaps another side's run. The table reports the median of the
rounds and the ratios of the medians. Without PostgreSQL's binaries the
PostgreSQL rows say so and the rest still runs.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alertbridge.testing.postgres_server import PostgresServer
from bench.alertbridge_serve import alertbridge_process, alertbridge_replicas
from bench.common import (
    BENCH_DIR,
    CORES,
    QUICK,
    ScenarioResult,
    ServerProcess,
    baseline_process,
    floor_process,
    log,
    median,
    work_dir,
)
from bench.postgres import missing, postgres_server

# wrk's threads take the targets in turn, so three threads are one per replica.
THREADS = 3
CONNECTIONS = 15
REPLICAS = 3
ROUNDS = 1 if QUICK else 3
SECONDS = 3 if QUICK else 10
WARMUP_SECONDS = 1 if QUICK else 2
TARGET_RATIO = 0.5
# Each wrk process gets its own number (bench/post.lua puts it into every
# fingerprint), so a measured run never re-sends its warm-up's notifications.
_RUNS = itertools.count(1)

_ALERTBRIDGE_CONFIG = """
[receivers.bench]
channel = "console"
msgtype = "markdown"
"""


@dataclass(frozen=True, slots=True)
class WrkRun:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(urls: Sequence[str], seconds: int) -> WrkRun:
    """One wrk run on the load core, its threads over ``urls`` in turn (same path on each);
    raises if wrk fails or prints no summary."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (make bench installs it: apt-get install wrk)")
    argv = CORES.pin(
        CORES.load,
        [
            wrk,
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(BENCH_DIR / "post.lua"),
            urls[0],
        ],
    )
    targets = " ".join(url.split("/")[2] for url in urls)  # host:port of each
    done = subprocess.run(  # noqa: S603 - our own argv
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
        env={**os.environ, "BENCH_TARGETS": targets, "BENCH_RUN": str(next(_RUNS))},
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(
        int(data[k]) for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkRun(
        requests=int(data["requests"]),
        seconds=int(data["duration_us"]) / 1e6,
        errors=errors,
        p50_ms=int(data["p50_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
    )


def _measure(servers: Sequence[ServerProcess]) -> WrkRun:
    """Warm up, then measure, with wrk's threads over ``servers`` (already running)."""
    urls = [f"{server.base_url}/alertmanager/bench" for server in servers]
    run_wrk(urls, WARMUP_SECONDS)
    return run_wrk(urls, SECONDS)


# The sides, in the order each round runs them.
BASELINE, FLOOR, SQLITE = "baseline", "durable floor", "alertbridge"
POSTGRES, REPLICATED = "postgres", f"postgres x{REPLICAS}"
SIDES = (BASELINE, FLOOR, SQLITE, POSTGRES, REPLICATED)


@contextmanager
def _side(name: str, workdir: Path, postgres: PostgresServer | None) -> Iterator[list[ServerProcess]]:
    """The running server(s) of one side; PostgreSQL sides get a fresh database each time."""
    with ExitStack() as stack:
        if name == BASELINE:
            yield [stack.enter_context(baseline_process(workdir))]
        elif name == FLOOR:
            yield [stack.enter_context(floor_process(workdir))]
        elif name == SQLITE:
            yield [stack.enter_context(alertbridge_process(workdir, _ALERTBRIDGE_CONFIG))]
        else:
            if postgres is None:
                raise RuntimeError(f"{name} needs PostgreSQL")
            url = postgres.create_database()
            count = REPLICAS if name == REPLICATED else 1
            yield list(
                stack.enter_context(alertbridge_replicas(workdir, _ALERTBRIDGE_CONFIG, count, store_url=url))
            )


def run() -> ScenarioResult:
    result = ScenarioResult("ingest")
    skipped = missing()
    sides = SIDES if skipped is None else (BASELINE, FLOOR, SQLITE)
    runs: dict[str, list[WrkRun]] = {side: [] for side in sides}
    with ExitStack() as stack:
        postgres = stack.enter_context(postgres_server()) if skipped is None else None
        for round_no in range(1, ROUNDS + 1):
            for side in sides:
                with (
                    work_dir(f"ingest-{side.replace(' ', '')}") as workdir,
                    _side(side, workdir, postgres) as servers,
                ):
                    measured = _measure(servers)
                runs[side].append(measured)
                log(
                    f"ingest round {round_no}/{ROUNDS} {side}: {measured.rps:.0f} req/s "
                    f"p50 {measured.p50_ms:.2f} ms p99 {measured.p99_ms:.2f} ms errors {measured.errors}"
                )

    def med(side: str, attr: str) -> float:
        return median([getattr(r, attr) for r in runs[side]])

    def ratio(top: str, bottom: str) -> float:
        below = med(bottom, "rps")
        return med(top, "rps") / below if below else 0.0

    errors = sum(r.errors for side in runs.values() for r in side)
    sqlite_ratio = ratio(SQLITE, BASELINE)
    result.add(
        f"ingest req/s @{CONNECTIONS} conns (alertbridge / bare Starlette)",
        f"{med(SQLITE, 'rps'):,.0f} / {med(BASELINE, 'rps'):,.0f} = {sqlite_ratio:.2f}×",
        f"≥ {TARGET_RATIO}×",
        sqlite_ratio >= TARGET_RATIO and errors == 0,
    )
    result.add(
        "ingest req/s durable floor / bare Starlette (fsynced group commit of the body, nothing else)",
        f"{med(FLOOR, 'rps'):,.0f} / {med(BASELINE, 'rps'):,.0f} = {ratio(FLOOR, BASELINE):.2f}×",
    )
    result.add(
        "ingest req/s alertbridge / durable floor",
        f"{med(SQLITE, 'rps'):,.0f} / {med(FLOOR, 'rps'):,.0f} = {ratio(SQLITE, FLOOR):.2f}×",
    )
    for side, label in ((SQLITE, "alertbridge"), (BASELINE, "bare Starlette")):
        result.add(
            f"ingest p50 / p99 {label}",
            f"{med(side, 'p50_ms'):.2f} / {med(side, 'p99_ms'):.2f} ms",
        )
    if skipped is None:
        result.add(
            "ingest req/s PostgreSQL / SQLite (one process)",
            f"{med(POSTGRES, 'rps'):,.0f} / {med(SQLITE, 'rps'):,.0f} = {ratio(POSTGRES, SQLITE):.2f}×",
        )
        result.add(
            f"ingest req/s PostgreSQL, {REPLICAS} replicas / one (round robin)",
            f"{med(REPLICATED, 'rps'):,.0f} / {med(POSTGRES, 'rps'):,.0f} = {ratio(REPLICATED, POSTGRES):.2f}×",
        )
        result.add(
            f"ingest p50 / p99 PostgreSQL, one / {REPLICAS} replicas",
            f"{med(POSTGRES, 'p50_ms'):.2f} / {med(POSTGRES, 'p99_ms'):.2f} ms, "
            f"{med(REPLICATED, 'p50_ms'):.2f} / {med(REPLICATED, 'p99_ms'):.2f} ms",
        )
    else:
        result.add("ingest req/s PostgreSQL / SQLite (one process)", skipped)
        result.add(f"ingest req/s PostgreSQL, {REPLICAS} replicas / one (round robin)", skipped)
    if errors:
        result.notes.append(f"ingest: {errors} wrk errors (non-2xx, timeouts or socket errors)")
    result.raw = {
        "threads": THREADS,
        "connections": CONNECTIONS,
        "rounds": ROUNDS,
        "seconds_per_run": SECONDS,
        "postgres": skipped or "ran",
        "runs": {side: [asdict(r) | {"rps": r.rps} for r in rs] for side, rs in runs.items()},
        "ratio": sqlite_ratio,
    }
    if skipped is None:
        result.raw["ratio_postgres_sqlite"] = ratio(POSTGRES, SQLITE)
        result.raw["ratio_replicas_one"] = ratio(REPLICATED, POSTGRES)
    result.raw["ratio_floor_baseline"] = ratio(FLOOR, BASELINE)
    return result
