"""Hot reload on a real ``alertbridge serve``: SIGHUP and POST /-/reload swap a
fully validated config at once, and a bad one leaves the running config alone."""

from __future__ import annotations

import io
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alertbridge.app import create_app
from alertbridge.config import load_config
from alertbridge.testing.server import ServerThread
from tests.harness import AlertbridgeProcess, wait_until

FIRING = (Path(__file__).parent / "data" / "alertmanager" / "firing.json").read_bytes()
TOKEN = "reload-webhook-token-0123"
AUTH = '[webhook_auth]\nbearer_token = "${WEBHOOK_TOKEN}"\n'
ONE = AUTH + '[receivers.first]\nchannel = "console"\n'
TWO = ONE + '[receivers.second]\nchannel = "console"\nlanguage = "en"\n'


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[AlertbridgeProcess]:
    process = AlertbridgeProcess(tmp_path, ONE, env={"WEBHOOK_TOKEN": TOKEN}).start()
    try:
        yield process
    finally:
        process.stop()


def post(bridge: AlertbridgeProcess, path: str, token: str = TOKEN) -> httpx.Response:
    return httpx.post(
        f"{bridge.base_url}{path}",
        content=FIRING if path.startswith("/alertmanager") else b"",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        timeout=15,
    )


def metric(bridge: AlertbridgeProcess, line_start: str) -> str:
    text = httpx.get(f"{bridge.base_url}/metrics", timeout=10).text
    return next(line for line in text.splitlines() if line.startswith(line_start))


def test_post_reload_adds_a_receiver_without_a_restart(bridge: AlertbridgeProcess) -> None:
    assert post(bridge, "/alertmanager/second").status_code == 404
    bridge.write_config(TWO)
    answer = post(bridge, "/-/reload")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "reloaded", "receivers": ["first", "second"]}
    assert post(bridge, "/alertmanager/second").status_code == 200
    bridge.wait_for_stdout("receiver=second")
    assert metric(bridge, 'alertbridge_config_reloads_total{outcome="success"}').endswith(" 1.0")
    assert bridge.proc is not None and bridge.proc.poll() is None  # the same process all along


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (ONE + '[receivers.broken]\nchannel = "console"\nmsgtype = "voice"\n', "receivers.broken"),
        (ONE + '[receivers.x]\nchannel = "console"\ntemplate = "missing"\n', "receivers.x.template"),
        (ONE + "[delivery]\nbogus = 1\n", "delivery.bogus: unknown key"),
        ("[receivers.first\n", "alertbridge.toml"),
        (ONE, "server.listen: changing this needs a restart"),
    ],
)
def test_a_bad_reload_keeps_the_running_config_and_says_why(
    bridge: AlertbridgeProcess, body: str, named: str
) -> None:
    if "server.listen" in named:
        text = bridge.config_path.read_text(encoding="utf-8")
        bridge.config_path.write_text(text.replace("127.0.0.1", "0.0.0.0"), encoding="utf-8")
    else:
        bridge.write_config(body)
    answer = post(bridge, "/-/reload")
    assert answer.status_code == 400, answer.text
    problems = answer.json()["problems"]
    assert any(named in problem for problem in problems), problems
    assert "alertbridge.toml" in problems[0]
    # Still serving the old config.
    assert post(bridge, "/alertmanager/first").status_code == 200
    assert post(bridge, "/alertmanager/broken").status_code == 404
    assert metric(bridge, 'alertbridge_config_reloads_total{outcome="failure"}').endswith(" 1.0")
    assert metric(bridge, "alertbridge_config_last_reload_successful").endswith(" 0.0")
    assert "config_reload_failed" in bridge.stderr()


def test_sighup_reloads(bridge: AlertbridgeProcess) -> None:
    bridge.write_config(TWO)
    assert bridge.proc is not None
    bridge.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config_reloaded" in bridge.stderr(), 10, "the SIGHUP reload")
    reloaded = [json.loads(line) for line in bridge.stderr().splitlines() if "config_reloaded" in line]
    assert reloaded[-1]["trigger"] == "SIGHUP"
    assert post(bridge, "/alertmanager/second").status_code == 200


def test_reload_needs_the_webhook_credentials_and_can_be_switched_off(bridge: AlertbridgeProcess) -> None:
    assert post(bridge, "/-/reload", token="wrong").status_code == 401
    text = bridge.config_path.read_text(encoding="utf-8")
    bridge.config_path.write_text(
        text.replace("[server]\n", "[server]\nreload_endpoint = false\n", 1), encoding="utf-8"
    )
    assert post(bridge, "/-/reload").status_code == 200
    assert post(bridge, "/-/reload").status_code == 404


def test_reload_endpoint_is_off_without_webhook_auth_unless_switched_on(tmp_path: Path) -> None:
    config = tmp_path / "alertbridge.toml"
    body = f'[store]\nurl = "sqlite:///{tmp_path / "ab.db"}"\n[receivers.first]\nchannel = "console"\n'
    config.write_text(body, encoding="utf-8")
    app = create_app(load_config(config, {}), config_path=config, out=io.StringIO())
    with ServerThread(app) as running:
        reload = f"{running.base_url}/-/reload"
        assert httpx.post(reload, timeout=10).status_code == 404
        config.write_text("[server]\nreload_endpoint = true\n" + body, encoding="utf-8")
        # Editing the file alone does not open it: only a loaded config counts.
        assert httpx.post(reload, timeout=10).status_code == 404
    app = create_app(load_config(config, {}), config_path=config, out=io.StringIO())
    with ServerThread(app) as running:
        assert httpx.post(f"{running.base_url}/-/reload", timeout=10).status_code == 200


def test_deliveries_of_a_removed_receiver_become_dead_letters(tmp_path: Path) -> None:
    # A receiver whose WeCom is unreachable keeps its delivery pending (retrying).
    unreachable = (
        ONE
        + '[wecom]\napi_base = "http://127.0.0.1:9"\ntimeout = "1s"\n'
        + '[wecom.apps.ops]\ncorp_id = "ww1"\nagent_id = 1000002\nsecret = "app-secret-1234"\n'
        + '[delivery]\ninitial_backoff = "1s"\nmax_backoff = "2s"\n'
    )
    bridge = AlertbridgeProcess(
        tmp_path,
        unreachable + '[receivers.gone]\nchannel = "app"\napp = "ops"\nto_user = ["zhangsan"]\n',
        env={"WEBHOOK_TOKEN": TOKEN},
    ).start()
    try:
        assert post(bridge, "/alertmanager/gone").status_code == 200
        wait_until(lambda: "delivery_retry" in bridge.stderr(), 15, "a failed attempt")
        bridge.write_config(unreachable)
        assert post(bridge, "/-/reload").status_code == 200

        def dead() -> list[tuple[str, str]]:
            with sqlite3.connect(bridge.db_path) as db:
                return db.execute(
                    "SELECT receiver, last_error FROM deliveries WHERE status = 'dead'"
                ).fetchall()

        wait_until(dead, 15, "the delivery dead-lettered")
    finally:
        bridge.stop()
    ((receiver, reason),) = dead()
    assert receiver == "gone" and "no longer configured" in reason
