"""``alertbridge outbox list`` and ``outbox retry`` on a real SQLite file, as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alertbridge.config import load_config
from alertbridge.message import Recipients
from alertbridge.stores import NewDelivery
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.testing.store_contract import make_ref_group as make_group

CONFIG = """
[store]
url = "sqlite:///{db}"
[wecom.apps.ops]
corp_id = "wwcli"
agent_id = 1000002
secret = "cli-secret-8d7c6b5a"
rate_limit_per_minute = 2
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
"""


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "outbox", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def setup(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A file with one delivery of each kind an operator meets."""
    config_path = tmp_path / "alertbridge.toml"
    config_path.write_text(CONFIG.format(db=tmp_path / "alertbridge.db"), encoding="utf-8")
    config = load_config(config_path, {})
    now = datetime.now(UTC)

    async def fill() -> dict[str, int]:
        store = SqliteOutboxStore(config.store.sqlite_path)
        await store.open()
        try:
            ids: dict[str, int] = {}
            for name in ("sent_after_retry", "held", "failing"):
                ids[name] = await store.enqueue(
                    NewDelivery(
                        receiver="oncall",
                        channel="app",
                        recipients=Recipients(to_user=("zhangsan",)),
                        group=make_group(name),
                        request_id=name,
                        accepted_at=now,
                    )
                )
            await store.claim_due(now, 10, timedelta(seconds=1))
            await store.reschedule(ids["sent_after_retry"], now, "http_5xx: WeCom answered 502")
            await store.mark_sent(ids["sent_after_retry"], now)
            await store.reschedule(ids["failing"], now + timedelta(minutes=5), "http_5xx: WeCom answered 502")
            # zhangsan's minute budget is used up: the dispatcher defers the next one.
            key = "app:wwcli:1000002:user:zhangsan"
            await store.record_sends([key], now - timedelta(seconds=20))
            await store.record_sends([key], now - timedelta(seconds=10))
            await store.defer([ids["held"]], now + timedelta(seconds=40))
            return ids
        finally:
            await store.close()

    return config_path, asyncio.run(fill())


def line_of(listing: str, delivery_id: int) -> str:
    [line] = [line for line in listing.splitlines() if line.split()[0] == str(delivery_id)]
    return line


def test_list_shows_attempts_holds_and_no_stale_errors(tmp_path: Path) -> None:
    config, ids = setup(tmp_path)
    listing = cli(config, "list")
    assert listing.returncode == 0, listing.stderr

    sent = line_of(listing.stdout, ids["sent_after_retry"]).split()
    # One failed attempt, then the one that sent it.
    assert sent[1] == "sent" and sent[3] == "2"
    assert "502" not in line_of(listing.stdout, ids["sent_after_retry"])

    held = line_of(listing.stdout, ids["held"])
    assert held.split()[3] == "0"  # a hold is not an attempt
    assert "held until " in held and held.endswith("(rate limit zhangsan)")

    failing = line_of(listing.stdout, ids["failing"])
    assert "retry at " in failing and "WeCom answered 502" in failing and "held" not in failing


def test_retry_of_a_sent_delivery_says_it_was_sent(tmp_path: Path) -> None:
    config, ids = setup(tmp_path)
    retried = cli(config, "retry", str(ids["sent_after_retry"]))
    assert retried.returncode == 0, retried.stderr
    assert f"delivery {ids['sent_after_retry']} was sent at " in retried.stdout
    assert "due again" not in retried.stdout
    assert " sent " in line_of(cli(config, "list").stdout, ids["sent_after_retry"])
    unknown = cli(config, "retry", "99999")
    assert unknown.returncode == 1 and "no delivery with id 99999" in unknown.stderr


def test_list_into_a_pipe_closed_early_is_no_traceback(tmp_path: Path) -> None:
    """``alertbridge outbox list | head -1``: the reader goes away before the output is written."""
    config, _ = setup(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before alertbridge writes a byte
    try:
        listing = subprocess.run(
            [sys.executable, "-m", "alertbridge", "outbox", "list", "-c", str(config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in listing.stderr and "BrokenPipeError" not in listing.stderr, listing.stderr
    assert listing.returncode == 0
