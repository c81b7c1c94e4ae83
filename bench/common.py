"""What every scenario shares: core pinning, the processes under test, results.

The issue asks for one layout in every run: the server under test on one core
(``taskset -c 0``), everything that generates load or plays WeCom on the other
(``taskset -c 1``: wrk, the fake WeCom process and this driver itself), all on
loopback. ``Cores`` holds that split; on a one-core machine both sides share
core 0 and the table says so.

Servers run as real processes, as users run them: ``alertbridge serve -c``
(bench.alertbridge_serve), the bare Starlette baseline (``bench.baseline_app``)
with the same uvicorn settings, and the fake WeCom (``bench.fake_server``).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# BENCH_KEEP=1 keeps each scenario's directory (configs, databases, server logs).
KEEP = os.environ.get("BENCH_KEEP", "") not in ("", "0")
# Where the servers' data dirs go: on disk, never a tmpfs (/tmp may be one).
DATA_ROOT = Path("/var/tmp")  # noqa: S108 - mkdtemp below makes a private directory in it

# Credentials of the fake WeCom's default app (alertbridge.testing.fake_wecom).
FAKE_CORP_ID = "ww0000fakecorp"
FAKE_SECRET = "fake-app-secret-0123456789"
FAKE_AGENT_ID = 1000002


# ---- cores -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cores:
    """Which core the server gets and which the load side (driver, wrk, fake) gets."""

    server: int
    load: int

    @property
    def split(self) -> bool:
        return self.server != self.load

    def pin(self, core: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run under ``taskset -c core`` (unchanged when taskset is missing)."""
        if shutil.which("taskset") is None:
            return list(argv)
        return ["taskset", "-c", str(core), *argv]


def detect_cores() -> Cores:
    """Core 0 for the server, the next available core for the load side."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        return Cores(server=available[0], load=available[1])
    return Cores(server=available[0], load=available[0])


CORES = detect_cores()


def pin_self_to_load_core() -> None:
    """Move this driver (and the threads it starts) onto the load core."""
    os.sched_setaffinity(0, {CORES.load})


@contextmanager
def pinned_self(core: int) -> Iterator[None]:
    """Run the block with this process pinned to ``core`` (in-process micro-benchmarks)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# ---- results -----------------------------------------------------------------


@dataclass(slots=True)
class Metric:
    """One table row. ``met`` is None for rows without a target (informational)."""

    scenario: str
    name: str
    result: str
    target: str = "—"
    met: bool | None = None


@dataclass(slots=True)
class ScenarioResult:
    """What one scenario reports: its table rows and the raw numbers behind them."""

    name: str
    metrics: list[Metric] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, result: str, target: str = "—", met: bool | None = None) -> None:
        self.metrics.append(Metric(self.name, name, result, target, met))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- processes -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory on disk (``/var/tmp``, not a tmpfs: fsync must cost what it costs),
    removed afterwards unless ``BENCH_KEEP`` is set."""
    base = DATA_ROOT if DATA_ROOT.is_dir() else None
    path = Path(tempfile.mkdtemp(prefix=f"alertbridge-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        if KEEP:
            log(f"kept {path} (BENCH_KEEP)")
        else:
            shutil.rmtree(path, ignore_errors=True)


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since start) of ``pid``, in KiB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


class ServerProcess:
    """A server subprocess pinned to a core, ready once ``ready_path`` answers 200."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        workdir: Path,
        *,
        core: int,
        ready_path: str,
    ) -> None:
        self.name = name
        self.argv = CORES.pin(core, argv)
        self.port = port
        self.workdir = workdir
        self.ready_path = ready_path
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Self:
        # stdout (console receivers print there) is discarded, stderr (logs) kept for errors.
        with self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(  # noqa: S603 - our own argv
                self.argv,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.workdir,
                env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.stderr()[-3000:]}"
                )
            try:
                if httpx.get(self.base_url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready:\n{self.stderr()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def baseline_process(workdir: Path) -> ServerProcess:
    """The bare Starlette app (``bench.baseline_app``) on the server core."""
    port = free_port()
    return ServerProcess(
        "baseline",
        [sys.executable, "-m", "bench.baseline_app", "--port", str(port)],
        port,
        workdir,
        core=CORES.server,
        ready_path="/healthz",
    )


def floor_process(workdir: Path) -> ServerProcess:
    """The durable floor (``bench.floor_app``) on the server core, its table in ``workdir``."""
    port = free_port()
    return ServerProcess(
        "floor",
        [sys.executable, "-m", "bench.floor_app", "--port", str(port), "--db", str(workdir / "floor.db")],
        port,
        workdir,
        core=CORES.server,
        ready_path="/healthz",
    )


def fake_wecom_process(workdir: Path) -> ServerProcess:
    """The fake WeCom (``bench.fake_server``) on the load core, as WeCom is not the server under test."""
    port = free_port()
    return ServerProcess(
        "fake-wecom",
        [sys.executable, "-m", "bench.fake_server", "--port", str(port)],
        port,
        workdir,
        core=CORES.load,
        ready_path="/_fake/stats",
    )


def fake_messages(fake: ServerProcess, kind: str = "messages") -> list[dict[str, Any]]:
    """The fake's delivered (``messages``) or ``dropped`` messages, oldest first."""
    response = httpx.get(f"{fake.base_url}/_fake/{kind}", timeout=60)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()
    return data


def fake_stats(fake: ServerProcess) -> dict[str, Any]:
    response = httpx.get(f"{fake.base_url}/_fake/stats", timeout=10)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MB"
