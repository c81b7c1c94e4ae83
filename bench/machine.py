"""One line describing where the numbers came from: CPU, cores, memory, OS, versions, disk."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path

from alertbridge.testing.postgres_server import find_binaries
from bench.common import CORES, DATA_ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return "? RAM"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _wrk_version() -> str:
    try:
        out = subprocess.run(
            ["wrk", "-v"],  # noqa: S607 - whichever wrk the run uses
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "wrk missing"
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk ?"


def _postgres_version() -> str:
    """The PostgreSQL server the PostgreSQL rows ran on (bench.postgres finds the same binaries)."""
    binaries = find_binaries()
    if binaries is None:
        return "no PostgreSQL"
    try:
        out = subprocess.run(  # noqa: S603 - the server binary the bench runs
            [str(binaries / "postgres"), "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return "PostgreSQL ?"
    words = out.stdout.split()  # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    return "PostgreSQL " + (words[2] if len(words) > 2 else "?")


def _disk() -> str:
    """Filesystem of the data dirs: fsync cost depends on it."""
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            ["df", "--output=fstype", str(DATA_ROOT)],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        fstype = out.stdout.split()[-1]
    except (OSError, IndexError):
        fstype = "?"
    return f"data on {fstype}"


def stolen_cpu_seconds() -> float:
    """CPU time the hypervisor gave to other guests so far, all cores together
    (the ``steal`` column of /proc/stat); 0.0 where the kernel does not say.

    On a shared VM this is the noise behind a run's spread: the latency
    scenario's p99 was 9 ms with no steal and 33 ms with ~4 % (Phase 10).
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    if fields[:1] != ["cpu"] or len(fields) < 9:
        return 0.0
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def describe_machine() -> str:
    import starlette
    import uvicorn

    cores = (
        f"{os.cpu_count()} cores, server on core {CORES.server}, load on core {CORES.load}"
        if CORES.split
        else f"{os.cpu_count()} core(s), server and load NOT separated"
    )
    return (
        f"{_cpu_model()}, {cores}, {_memory_gib()}, {_os_name()} (Linux {platform.release()}), "
        f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, "
        f"Starlette {starlette.__version__}, SQLite {sqlite3.sqlite_version}, {_postgres_version()}, "
        f"{_wrk_version()}, {_disk()}"
    )
