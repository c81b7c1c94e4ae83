"""``alertbridge serve`` refuses to start, with one clear line, on a taken port or a store in use."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.harness import AlertbridgeProcess

CONSOLE = '[receivers.console]\nchannel = "console"\n'


def serve(process: AlertbridgeProcess) -> subprocess.CompletedProcess[str]:
    """Run ``serve`` expecting it to give up by itself (a hang fails the test by timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "serve", "-c", str(process.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=process.workdir,
        env=process.env,
    )


def test_a_port_in_use_is_one_clear_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = AlertbridgeProcess(tmp_path, CONSOLE, port=int(taken.getsockname()[1]))
        result = serve(process)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"server.listen: 127.0.0.1:{process.port} is already in use by another process; "
        "stop it or choose another port"
    ]
    assert "started" not in result.stderr + result.stdout


def test_a_second_serve_on_the_same_store_names_the_first_by_pid(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = AlertbridgeProcess(tmp_path / "a", CONSOLE).start()
    try:
        (tmp_path / "b").mkdir()
        second = AlertbridgeProcess(tmp_path / "b", CONSOLE)
        second.db_path = first.db_path
        second.write_config(CONSOLE)
        result = serve(second)
        assert first.proc is not None
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert f"in use by another alertbridge (PID {first.proc.pid}," in line
        assert "started" not in result.stderr
    finally:
        first.stop()
    # Once the first is gone the store is free again (the lock dies with its process).
    second.start()
    second.stop()


def test_the_unauthenticated_warning_names_the_setting_in_clear(tmp_path: Path) -> None:
    """The start-up warning says which setting to add; the secret filter must not
    mistake its field for a credential and mask it."""
    process = AlertbridgeProcess(tmp_path, CONSOLE).start()
    try:
        [line] = [line for line in process.stderr().splitlines() if "webhooks_unauthenticated" in line]
    finally:
        process.stop()
    assert "webhook_auth" in line.split("reason", 1)[0]
    assert "***" not in line
