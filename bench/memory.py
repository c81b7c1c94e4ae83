"""Scenario 6a, memory at rest: resident memory of an idle alertbridge vs the bare Starlette app.

Both are started as in the ingest scenario (alertbridge with an app receiver
pointed at the fake WeCom and a console receiver, its SQLite store opened and
its dispatcher running), left idle for ``IDLE_SECONDS`` after they answer
their readiness probe, then their ``VmRSS`` is read from /proc. The peak
during the storm is reported by the storm scenario. Target (Phase 10): the
idle ratio at most ``TARGET_RATIO``.
"""

from __future__ import annotations

import time

from bench.alertbridge_serve import alertbridge_process
from bench.common import (
    ScenarioResult,
    baseline_process,
    fake_wecom_process,
    log,
    mib,
    rss_kib,
    work_dir,
)

IDLE_SECONDS = 3.0
TARGET_RATIO = 1.5

_CONFIG = """
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["member1", "member2"]
msgtype = "markdown"

[receivers.console]
channel = "console"
msgtype = "markdown"
"""


def run() -> ScenarioResult:
    result = ScenarioResult("memory")
    with work_dir("memory") as workdir, fake_wecom_process(workdir) as fake:
        with alertbridge_process(workdir, _CONFIG, api_base=fake.base_url) as alertbridge:
            time.sleep(IDLE_SECONDS)
            alertbridge_kib = rss_kib(alertbridge.pid)
        with baseline_process(workdir) as baseline:
            time.sleep(IDLE_SECONDS)
            baseline_kib = rss_kib(baseline.pid)
    ratio = alertbridge_kib / baseline_kib if baseline_kib else 0.0
    log(f"memory: idle alertbridge {mib(alertbridge_kib)}, bare Starlette {mib(baseline_kib)}")
    result.add(
        "idle RSS (alertbridge / bare Starlette)",
        f"{mib(alertbridge_kib)} / {mib(baseline_kib)} = {ratio:.1f}×",
        f"≤ {TARGET_RATIO}×",
        ratio <= TARGET_RATIO,
    )
    result.raw = {"alertbridge_kib": alertbridge_kib, "baseline_kib": baseline_kib, "ratio": ratio}
    return result
