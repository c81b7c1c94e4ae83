"""Scenario 1, ingest: webhook throughput and latency of alertbridge vs a bare Starlette app.

``wrk`` (on the load core) posts a 3-alert Alertmanager notification, a new
one each request (bench/post.lua), over 16 keep-alive connections to
``POST /alertmanager/bench``:

- alertbridge: the real ``alertbridge serve`` process with the SQLite outbox on
  disk (every 200 is answered after an fsynced commit) and one ``console``
  receiver whose output goes to /dev/null. Its dispatcher renders and "sends"
  every accepted notification on the same core while wrk runs, as it would in
  production; that is part of the cost of accepting.
- baseline: ``bench.baseline_app``, same uvicorn settings, only ``request.json()``.

Rounds alternate baseline and alertbridge (baseline first), each on a freshly
started process in a fresh directory, after a short warm-up whose numbers are
discarded; a server is stopped before the next starts, so leftover dispatching
never overlaps the other side's run. The table reports the median of the
rounds and the ratio of the medians.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import (
    BENCH_DIR,
    CORES,
    QUICK,
    ScenarioResult,
    ServerProcess,
    alertbridge_process,
    baseline_process,
    log,
    median,
    work_dir,
)

CONNECTIONS = 16
ROUNDS = 1 if QUICK else 3
SECONDS = 3 if QUICK else 10
WARMUP_SECONDS = 1 if QUICK else 2
TARGET_RATIO = 0.5

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


def run_wrk(url: str, seconds: int, connections: int = CONNECTIONS) -> WrkRun:
    """One wrk run on the load core; raises if wrk fails or prints no summary."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (make bench installs it: apt-get install wrk)")
    argv = CORES.pin(
        CORES.load,
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(BENCH_DIR / "post.lua"),
            url,
        ],
    )
    done = subprocess.run(  # noqa: S603 - our own argv
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
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


def _measure(server: ServerProcess) -> WrkRun:
    url = f"{server.base_url}/alertmanager/bench"
    with server:
        run_wrk(url, WARMUP_SECONDS)
        return run_wrk(url, SECONDS)


def run() -> ScenarioResult:
    result = ScenarioResult("ingest")
    runs: dict[str, list[WrkRun]] = {"baseline": [], "alertbridge": []}
    for round_no in range(1, ROUNDS + 1):
        for side in ("baseline", "alertbridge"):
            with work_dir(f"ingest-{side}") as workdir:
                server = (
                    baseline_process(workdir)
                    if side == "baseline"
                    else alertbridge_process(workdir, _ALERTBRIDGE_CONFIG)
                )
                measured = _measure(server)
            runs[side].append(measured)
            log(
                f"ingest round {round_no}/{ROUNDS} {side}: {measured.rps:.0f} req/s "
                f"p50 {measured.p50_ms:.2f} ms p99 {measured.p99_ms:.2f} ms errors {measured.errors}"
            )

    def med(side: str, attr: str) -> float:
        return median([getattr(r, attr) for r in runs[side]])

    ab_rps, base_rps = med("alertbridge", "rps"), med("baseline", "rps")
    ratio = ab_rps / base_rps if base_rps else 0.0
    errors = sum(r.errors for side in runs.values() for r in side)
    result.add(
        f"ingest req/s @{CONNECTIONS} conns (alertbridge / bare Starlette)",
        f"{ab_rps:,.0f} / {base_rps:,.0f} = {ratio:.2f}×",
        f"≥ {TARGET_RATIO}×",
        ratio >= TARGET_RATIO and errors == 0,
    )
    result.add(
        "ingest p50 / p99 alertbridge",
        f"{med('alertbridge', 'p50_ms'):.2f} / {med('alertbridge', 'p99_ms'):.2f} ms",
    )
    result.add(
        "ingest p50 / p99 bare Starlette",
        f"{med('baseline', 'p50_ms'):.2f} / {med('baseline', 'p99_ms'):.2f} ms",
    )
    if errors:
        result.notes.append(f"ingest: {errors} wrk errors (non-2xx, timeouts or socket errors)")
    result.raw = {
        "connections": CONNECTIONS,
        "rounds": ROUNDS,
        "seconds_per_run": SECONDS,
        "runs": {side: [asdict(r) | {"rps": r.rps} for r in rs] for side, rs in runs.items()},
        "ratio": ratio,
    }
    return result
