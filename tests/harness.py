"""Run alertbridge as users do: a real ``alertbridge serve`` process on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeWeCom


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AlertbridgeProcess:
    """``alertbridge serve`` in a subprocess with its own config and data dir.

    stdout (where the console channel prints) and stderr (logs) go to files in
    the work dir so tests can read them after the process is gone.
    """

    def __init__(
        self,
        workdir: Path,
        config_body: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        store_url: str | None = None,
        store_settings: str = "",
    ) -> None:
        """``store_url``: ``[store] url`` (as written, ``${VAR}`` and all); a SQLite
        file in ``workdir`` by default. ``store_settings``: more ``[store]`` lines
        (``lease``, ``replica`` …)."""
        self.workdir = workdir
        self.port = port or free_port()
        self.config_path = workdir / "alertbridge.toml"
        self.db_path = workdir / "data" / "alertbridge.db"
        self.store_url = store_url
        self.store_settings = store_settings
        self.write_config(config_body)
        self.env = {**os.environ, **(env or {})}
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, config_body: str) -> None:
        """(Re)write the config file: the listen address and store, then ``config_body``."""
        # The SQLite file follows db_path, which a test may point elsewhere before rewriting.
        url = self.store_url or f"sqlite:///{self.db_path}"
        self.config_path.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n[store]\nurl = "{url}"\n{self.store_settings}\n'
            + config_body,
            encoding="utf-8",
        )

    def start(self, timeout: float = 20.0) -> AlertbridgeProcess:
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "alertbridge", "serve", "-c", str(self.config_path)],
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertbridge exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"alertbridge did not become ready:\n{self.stderr()}")

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str) -> list[dict[str, str]]:
        """The log lines whose event is ``name`` (logs are JSON: stderr is not a terminal)."""
        return events_in(self.stderr(), name)

    def wait_for_stdout(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.stdout()
            if text in out:
                return out
            time.sleep(0.05)
        raise AssertionError(
            f"{text!r} not printed within {timeout}s; stdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"
        )


def marked_notification(marker: str, prefix: str) -> bytes:
    """An Alertmanager notification of one firing alert whose group, fingerprint
    and rendered text all carry ``marker``, so a test can find it in WeCom's messages."""
    alertname = f"{prefix}_{marker}"
    labels = {"alertname": alertname, "instance": "web-1:9100", "severity": "critical", "marker": marker}
    return json.dumps(
        {
            "receiver": "alertbridge",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"marker {marker}"},
                    "startsAt": "2026-11-29T12:08:44.904Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus.test:9090/graph",
                    "fingerprint": hashlib.sha256(marker.encode()).hexdigest()[:16],
                }
            ],
            "groupLabels": {"alertname": alertname},
            "commonLabels": labels,
            "commonAnnotations": {"summary": f"marker {marker}"},
            "externalURL": "http://alertmanager.test:9093",
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}',
            "truncatedAlerts": 0,
        }
    ).encode()


def post_marked(base_url: str, mark: str, prefix: str) -> int | str:
    """Post ``marked_notification(mark, prefix)`` to ``/alertmanager/oncall``:
    the HTTP status, or the transport error's class name when the process
    died under the request (a storm under kill -9)."""
    try:
        return httpx.post(
            f"{base_url}/alertmanager/oncall",
            content=marked_notification(mark, prefix),
            headers={"Content-Type": "application/json"},
            timeout=30,
        ).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def delivered_texts(wecom: FakeWeCom) -> list[str]:
    """The text of every app message the fake delivered (not the ones it dropped)."""
    return [m.content or "" for m in wecom.messages(MESSAGE_SEND)]


def deliveries_of(mark: str, texts: list[str]) -> int:
    """How many of ``texts`` carry ``mark``."""
    return sum(mark in text for text in texts)


def events_in(log: str, name: str) -> list[dict[str, str]]:
    """The JSON log lines of ``log`` whose event is ``name``."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            found.append(record)
    return found


def require_binary(name: str) -> str:
    """Path of a tool a test needs; a skip locally, a failure under CI=true."""
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (CI installs it in .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class AlertmanagerProcess:
    """The real Alertmanager (Debian ``prometheus-alertmanager``) on loopback."""

    def __init__(self, workdir: Path, webhook_url: str, bearer_token: str | None = None) -> None:
        self.binary = require_binary("prometheus-alertmanager")
        self.workdir = workdir
        self.port = free_port()
        auth = ""
        if bearer_token:
            auth = (
                "        http_config:\n"
                "          authorization:\n"
                "            type: Bearer\n"
                f"            credentials: {bearer_token}\n"
            )
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(
            "route:\n"
            "  receiver: alertbridge\n"
            "  group_by: [alertname]\n"
            "  group_wait: 1s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n"
            "  - name: alertbridge\n"
            "    webhook_configs:\n"
            f"      - url: {webhook_url}\n"
            "        send_resolved: true\n" + auth,
            encoding="utf-8",
        )
        self.log_path = workdir / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> AlertmanagerProcess:
        (self.workdir / "am-data").mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.path={self.workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--web.external-url=http://127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"alertmanager not ready: {self.log_path.read_text()}")

    def post_alerts(self, alerts: list[dict[str, object]]) -> None:
        response = httpx.post(f"{self.base_url}/api/v2/alerts", json=alerts, timeout=5)
        response.raise_for_status()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
