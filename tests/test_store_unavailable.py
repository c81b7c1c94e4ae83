"""The store becomes unwritable under a running ``alertbridge serve``, then comes back.

The hard rule (README, ``alertbridge.web.ingest``): 200 only after the
delivery is committed, so nothing is acknowledged that was not stored. While
the SQLite file cannot be written, webhooks must get 503 with a one-line
reason (Alertmanager retries 5xx), the process must stay up, and once the
file is writable again new webhooks are accepted and the dispatcher delivers
what was pending before the outage.

Two honest ways to take the store away from a process that already has the
file open (as root, so permissions alone do not stop it):

* **read-only**: ``chattr +i`` on the database and its WAL. ext4 refuses
  writes through already open descriptors of an immutable file (EPERM), as a
  file system remounted read-only after an I/O error does (EROFS). ``chmod``
  is no substitute even for an unprivileged process: permissions are checked
  at ``open`` only and SQLite keeps its descriptors open, so a running
  alertbridge goes on writing a 0444 file undisturbed.
* **disk full**: ``RLIMIT_FSIZE`` lowered (``prlimit``) on the running
  process to the WAL's current size, so the WAL cannot grow; Python ignores
  SIGXFSZ, so the append fails with EFBIG (see ``DiskFull``).

Only read-only needs a tool, ``chattr`` (Debian e2fsprogs), and ``chattr +i``
needs CAP_LINUX_IMMUTABLE: where either is missing the read-only tests skip
locally and fail under CI=true (``require_immutable_flag``).

Two tests pin dispatcher behaviour during an outage: failed claims are
retried at the poll interval (no busy loop), and a delivery whose outcome
could not be written is released as soon as the store is back, not when its
lease runs out.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeWeCom, Fault
from tests.harness import AlertbridgeProcess, events_in, marked_notification, require_binary, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

MEMBER = "zhangsan"
# Delivery retry delays: short, so rows failed before the outage come due during it.
BACKOFF = "2s"


def post(bridge: AlertbridgeProcess, marker: str) -> httpx.Response:
    return httpx.post(
        f"{bridge.base_url}/alertmanager/oncall",
        content=marked_notification(marker, "Outage"),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def stored_markers(db_path: Path) -> list[str]:
    """The marker label of every stored delivery, read through a second connection."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT alert_group FROM deliveries ORDER BY id").fetchall()
    return [alert["labels"]["marker"] for (group,) in rows for alert in json.loads(group)["alerts"]]


def rescheduled(db_path: Path) -> int:
    """Pending deliveries that failed once and are waiting, unleased, for their retry."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts >= 1 AND lease_until IS NULL"
        ).fetchone()
    return int(row[0])


def delivered(wecom: FakeWeCom, marker: str) -> bool:
    return any(marker in (m.content or "") for m in wecom.messages(MESSAGE_SEND))


class Outage(Protocol):
    """Takes the store's file away from the running process, and gives it back."""

    # What SQLite (and so the webhook_not_stored log line) says while it lasts.
    reason: str

    def begin(self, bridge: AlertbridgeProcess) -> None: ...

    def end(self, bridge: AlertbridgeProcess) -> None: ...


@dataclass
class ReadOnlyFiles:
    """``chattr +i`` on the database and its WAL. Not the ``-shm``: SQLite writes it
    through a shared mapping, where a refused write could only surface as a
    signal, not an error; and it holds no data, only the WAL index."""

    chattr: str
    reason: str = "disk I/O error (SQLITE_IOERR_WRITE)"
    files: list[Path] = field(default_factory=list)

    def begin(self, bridge: AlertbridgeProcess) -> None:
        self.files = [bridge.db_path, bridge.db_path.with_name(bridge.db_path.name + "-wal")]
        subprocess.run([self.chattr, "+i", *map(str, self.files)], check=True)

    def end(self, bridge: AlertbridgeProcess) -> None:
        if self.files:
            subprocess.run([self.chattr, "-i", *map(str, self.files)], check=True)
            self.files = []


@dataclass
class DiskFull:
    """``RLIMIT_FSIZE`` of the running process lowered to the WAL's current size.

    The next commit's WAL append fails with EFBIG. SQLite reports that as
    SQLITE_IOERR_WRITE ("disk I/O error"), where a real ENOSPC would be
    SQLITE_FULL ("database or disk is full"); the path through alertbridge
    (StoreError, rollback, 503) is the same, only the reason text differs.
    A real full file system would need a mount, which a CI container as
    root cannot make.
    """

    reason: str = "disk I/O error (SQLITE_IOERR_WRITE)"
    saved: tuple[int, int] | None = None

    def begin(self, bridge: AlertbridgeProcess) -> None:
        assert bridge.proc is not None
        wal = bridge.db_path.with_name(bridge.db_path.name + "-wal")
        limit = wal.stat().st_size
        # The process appends its logs to stderr.log under the same limit; they
        # would be lost (not fatal: logging swallows OSError) if it were bigger.
        assert bridge.stderr_path.stat().st_size < limit - 64 * 1024, "stderr.log too big for the limit"
        self.saved = resource.prlimit(bridge.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(bridge.proc.pid, resource.RLIMIT_FSIZE, (limit, self.saved[1]))

    def end(self, bridge: AlertbridgeProcess) -> None:
        if self.saved is not None and bridge.proc is not None and bridge.proc.poll() is None:
            resource.prlimit(bridge.proc.pid, resource.RLIMIT_FSIZE, self.saved)
        self.saved = None


def require_immutable_flag(directory: Path) -> str:
    """``chattr`` when ``+i`` works in ``directory``; a skip locally, a failure under CI=true.

    It needs CAP_LINUX_IMMUTABLE and a file system with the flag (ext4, xfs,
    btrfs); a default Docker container lacks the capability.
    """
    chattr = require_binary("chattr")
    probe = directory / "immutable-probe"
    probe.write_bytes(b"probe")
    done = subprocess.run([chattr, "+i", str(probe)], capture_output=True, text=True)
    if done.returncode == 0:
        subprocess.run([chattr, "-i", str(probe)], check=True)
        probe.unlink()
        return chattr
    probe.unlink()
    message = (
        f"chattr +i does not work here (needs CAP_LINUX_IMMUTABLE on ext4/xfs/btrfs): {done.stderr.strip()}"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def start_bridge(workdir: Path, api_base: str) -> AlertbridgeProcess:
    """alertbridge with one app receiver, ``oncall``, sending to the fake at ``api_base``."""
    return AlertbridgeProcess(
        workdir,
        f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
[delivery]
initial_backoff = "{BACKOFF}"
max_backoff = "{BACKOFF}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["{MEMBER}"]
""",
        env={"SECRET": SECRET},
    ).start()


def leave_pending(bridge: AlertbridgeProcess, wecom: FakeWeCom, markers: list[str]) -> None:
    """Accept ``markers`` and make their first send fail (WeCom busy), so they wait
    in the outbox, unleased, for a retry ``BACKOFF`` (±jitter) from now."""
    wecom.add_fault(MESSAGE_SEND, Fault(errcode=-1, errmsg="system busy"), times=len(markers))
    for marker in markers:
        response = post(bridge, marker)
        assert response.status_code == 200, response.text
    wait_until(lambda: rescheduled(bridge.db_path) == len(markers), 10, "the first sends to be rescheduled")
    assert not wecom.messages()


class Stream:
    """Posts a notification every ``pace`` seconds from a thread, across the outage's
    edges, where a commit and the file going away race; at most ``limit`` of them
    (every one may reach the same member, whom WeCom allows 30 a minute)."""

    def __init__(self, bridge: AlertbridgeProcess, limit: int = 10, pace: float = 0.2) -> None:
        self.bridge = bridge
        self.limit = limit
        self.pace = pace
        # marker -> HTTP status; anything but 200 or 503 fails the test.
        self.outcomes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-stream", daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        for index in range(self.limit):
            if self._stop.is_set():
                return
            marker = f"mkC{index:03d}x"
            self.outcomes[marker] = post(self.bridge, marker).status_code
            self._stop.wait(self.pace)

    def answered(self, status: int) -> list[str]:
        return [marker for marker, got in self.outcomes.items() if got == status]


@pytest.mark.parametrize("kind", ["read-only", "disk-full"])
def test_unwritable_store_answers_503_then_recovers(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str], kind: str
) -> None:
    wecom, api_base = fake_wecom
    outage: Outage = ReadOnlyFiles(require_immutable_flag(tmp_path)) if kind == "read-only" else DiskFull()
    bridge = start_bridge(tmp_path, api_base)
    early, during, after = ["mkE001x", "mkE002x"], ["mkD001x", "mkD002x", "mkD003x"], ["mkA001x", "mkA002x"]
    try:
        # Accepted before the outage, they come due while the store is unwritable.
        leave_pending(bridge, wecom, early)
        with Stream(bridge) as stream:
            time.sleep(0.1)
            outage.begin(bridge)
            try:
                # Concurrent posts share one group-commit batch: it fails as a whole.
                with ThreadPoolExecutor(max_workers=len(during)) as pool:
                    responses = list(pool.map(lambda m: post(bridge, m), during))
                for response in responses:
                    assert response.status_code == 503, response.text
                    answer = response.json()
                    assert answer["status"] == "error"
                    assert answer["error"] and "\n" not in answer["error"]
                # The dispatcher cannot claim the rows that came due; it keeps trying.
                wait_until(lambda: "outbox_claim_failed" in bridge.stderr(), 10, "a failed claim")
                assert bridge.proc is not None and bridge.proc.poll() is None, bridge.stderr()
                assert httpx.get(f"{bridge.base_url}/healthz", timeout=5).status_code == 200
                # /readyz commits a probe write: it takes the pod out of service.
                assert httpx.get(f"{bridge.base_url}/readyz", timeout=5).status_code == 503
                assert not any(delivered(wecom, marker) for marker in early), "sent while the store was down"
            finally:
                outage.end(bridge)
            time.sleep(0.3)
        assert set(stream.outcomes.values()) <= {200, 503}, stream.outcomes
        assert stream.answered(503), f"no streamed webhook fell into the outage: {stream.outcomes}"

        log = bridge.stderr()
        assert len(events_in(log, "webhook_not_stored")) == len(during) + len(stream.answered(503)), log
        assert outage.reason in log, log

        for marker in after:
            response = post(bridge, marker)
            assert response.status_code == 200, response.text
        accepted = early + stream.answered(200) + after
        wait_until(
            lambda: all(delivered(wecom, marker) for marker in accepted), 15, "delivery after recovery"
        )
        assert bridge.proc is not None and bridge.proc.poll() is None
    finally:
        outage.end(bridge)
        bridge.stop()
    # A clean shutdown (uvicorn re-raises the SIGTERM it handled, hence -15).
    assert "Application shutdown complete" in bridge.stderr(), bridge.stderr()

    # Nothing answered 503 was stored (or sent); everything answered 200 was, once.
    refused = during + stream.answered(503)
    assert sorted(stored_markers(bridge.db_path)) == sorted(accepted)
    assert not any(delivered(wecom, marker) for marker in refused)
    for marker in accepted:
        assert sum(marker in (m.content or "") for m in wecom.messages(MESSAGE_SEND)) == 1, marker
    # A send whose bookkeeping the outage cut off is sent again once the store
    # is back; WeCom's duplicate check is what hides it, and only that.
    assert {m.reason for m in wecom.dropped()} <= {"duplicate"}, wecom.dropped()
    with sqlite3.connect(bridge.db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_dispatcher_does_not_spin_while_the_store_is_down(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    """A failing claim must be retried at a bounded rate (POLL_INTERVAL or a backoff),
    not in a tight loop that pins a core and floods the log during an outage."""
    wecom, api_base = fake_wecom
    bridge = start_bridge(tmp_path, api_base)
    outage = DiskFull()
    held = 2.0
    try:
        leave_pending(bridge, wecom, ["mkS001x"])
        outage.begin(bridge)
        try:
            wait_until(lambda: "outbox_claim_failed" in bridge.stderr(), 10, "a failed claim")
            time.sleep(held)
        finally:
            outage.end(bridge)
        failed_claims = len(bridge.events("outbox_claim_failed"))
        # Recovery still works, whatever the rate was.
        wait_until(lambda: delivered(wecom, "mkS001x"), 15, "the pending row delivered after recovery")
    finally:
        outage.end(bridge)
        bridge.stop()
    # One claim per POLL_INTERVAL (1 s) over the outage, plus slack for the edges.
    assert failed_claims <= held / 1.0 + 4, f"{failed_claims} failed claims in {held}s"


def test_a_send_in_flight_when_the_store_fails_is_retried_soon_after_recovery(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    """The outage begins while a send is in flight and that send fails (WeCom busy).
    Its reschedule cannot be written; once the store is back the delivery should be
    retried within its backoff, not after the lease taken when it was claimed."""
    wecom, api_base = fake_wecom
    bridge = start_bridge(tmp_path, api_base)
    outage = DiskFull()
    try:
        wecom.add_fault(MESSAGE_SEND, Fault(errcode=-1, errmsg="system busy", delay=1.5))
        response = post(bridge, "mkL001x")
        assert response.status_code == 200, response.text
        wait_until(lambda: wecom.request_count(MESSAGE_SEND) == 1, 10, "the send in flight")
        outage.begin(bridge)
        try:
            wait_until(lambda: "outbox_update_failed" in bridge.stderr(), 10, "the failed reschedule")
        finally:
            outage.end(bridge)
        # BACKOFF is 2 s (jittered to 1-2 s): three times that is plenty.
        wait_until(lambda: delivered(wecom, "mkL001x"), 6, "the retry after recovery")
    finally:
        outage.end(bridge)
        bridge.stop()


def test_unwritable_store_at_start_stops_the_process_with_the_reason(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    """A store that cannot be opened for writing at start-up is not served around:
    ``serve`` exits non-zero and says which file and why, so the orchestrator's
    restarts and the operator see it, rather than a process answering 503 forever."""
    chattr = require_immutable_flag(tmp_path)
    _, api_base = fake_wecom
    bridge = start_bridge(tmp_path, api_base)
    bridge.stop()
    data_dir = bridge.db_path.parent
    # The database and its directory (where SQLite must create -wal and -shm).
    locked = [str(bridge.db_path), str(data_dir)]
    subprocess.run([chattr, "+i", *locked], check=True)
    try:
        with pytest.raises(RuntimeError, match="alertbridge exited with"):
            bridge.start(timeout=15)
    finally:
        subprocess.run([chattr, "-i", *locked], check=True)
        bridge.kill()
    assert bridge.proc is not None and bridge.proc.returncode not in (0, None)
    assert f"cannot open {bridge.db_path}" in bridge.stderr(), bridge.stderr()
