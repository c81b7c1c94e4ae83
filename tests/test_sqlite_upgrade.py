"""A SQLite store written by an earlier release is upgraded in place and its work delivered.

The database is built here from the Phase 5 schema: the first five outbox
migration steps (``PRAGMA user_version`` 5) and the first two of the state
store (``schema_versions``: state = 2). The migration lists are append-only,
so their prefixes are exactly the DDL that release ran. Pending deliveries
in it must survive ``alertbridge migrate -c FILE`` and ``serve`` (which
migrates by itself) and go out; a sent one stays sent.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest

from alertbridge.message import Recipients
from alertbridge.stores.codec import dumps, to_us
from alertbridge.stores.sqlite import outbox_schema, state_schema
from alertbridge.testing.store_contract import make_group
from tests.harness import AlertbridgeProcess, wait_until

PHASE5_OUTBOX: Final = 5
PHASE5_STATE: Final = 2
CONSOLE = '[receivers.console]\nchannel = "console"\n'


def write_phase5_database(path: Path) -> None:
    """A Phase 5 database with two pending deliveries and one sent, as that release left it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for step in outbox_schema.MIGRATIONS[:PHASE5_OUTBOX]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {PHASE5_OUTBOX}")
        db.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        for step in state_schema.MIGRATIONS[:PHASE5_STATE]:
            for statement in step:
                db.execute(statement)
        db.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?, ?)",
            (state_schema.COMPONENT, PHASE5_STATE),
        )
        accepted = to_us(datetime.now(UTC) - timedelta(minutes=1))
        for name, status in (("UpgradedOne", "pending"), ("UpgradedTwo", "pending"), ("LongSent", "sent")):
            db.execute(
                "INSERT INTO deliveries (receiver, channel, recipients, alert_group, request_id,"
                " accepted_at, status, next_attempt_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    "console",
                    "console",
                    dumps(Recipients().to_dict()),
                    dumps(make_group(name).to_dict()),
                    f"req-{name}",
                    accepted,
                    status,
                    accepted,
                    accepted if status == "sent" else None,
                ),
            )
    finally:
        db.close()


def versions(path: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        outbox = db.execute("PRAGMA user_version").fetchone()[0]
        state = db.execute(
            "SELECT version FROM schema_versions WHERE component = ?", (state_schema.COMPONENT,)
        ).fetchone()[0]
    return int(outbox), int(state)


def statuses(path: Path) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT status FROM deliveries ORDER BY id")]


@pytest.mark.parametrize("how", ["migrate-then-serve", "serve-alone"])
def test_a_phase5_database_is_upgraded_in_place_and_its_pending_rows_delivered(
    tmp_path: Path, how: str
) -> None:
    bridge = AlertbridgeProcess(tmp_path, CONSOLE)
    write_phase5_database(bridge.db_path)
    assert versions(bridge.db_path) == (PHASE5_OUTBOX, PHASE5_STATE)
    current = (outbox_schema.SCHEMA_VERSION, state_schema.SCHEMA_VERSION)
    assert current > (PHASE5_OUTBOX, PHASE5_STATE)

    if how == "migrate-then-serve":
        done = subprocess.run(
            [sys.executable, "-m", "alertbridge", "migrate", "-c", str(bridge.config_path)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stdout
        assert versions(bridge.db_path) == current
        # Migrating sends nothing: the rows wait for serve.
        assert statuses(bridge.db_path) == ["pending", "pending", "sent"]

    bridge.start()
    try:
        bridge.wait_for_stdout("UpgradedOne", timeout=15)
        bridge.wait_for_stdout("UpgradedTwo", timeout=15)
        wait_until(lambda: statuses(bridge.db_path) == ["sent"] * 3, 15, "both pending rows marked sent")
    finally:
        bridge.stop()
    assert versions(bridge.db_path) == current
    assert "LongSent" not in bridge.stdout()  # a row sent by the old release is not sent again
    with sqlite3.connect(bridge.db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
