"""``check-config --online`` against the fake WeCom, a real Alertmanager and the Grafana stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertbridge.testing.fake_wecom import AGENT_GET, MESSAGE_SEND, WEBHOOK_SEND, FakeApp, FakeWeCom
from alertbridge.testing.grafana_standin import GrafanaStandin
from alertbridge.testing.server import ServerThread
from tests.harness import AlertmanagerProcess, free_port

OPS_SECRET = "online-ops-secret-7a6b5c4d"
WRONG_SECRET = "online-wrong-secret-1f2e3d4c"
GRAFANA_TOKEN = "glsa_online_token_9z8y7x"
ROBOT_KEY = "693a91f6-7000-4bc4-97a0-0ec25afa5aaa"


@pytest.fixture(scope="module")
def world(alertmanager: AlertmanagerProcess) -> Iterator[tuple[FakeWeCom, str, str, str]]:
    """The fake WeCom, a real Alertmanager and a Grafana stand-in in front of it."""
    wecom = FakeWeCom(apps=[FakeApp(corp_id="wwonline", secret=OPS_SECRET, agent_id=1000002)])
    standin = GrafanaStandin(alertmanager.base_url, token=GRAFANA_TOKEN)
    with wecom.serve() as wecom_url, ServerThread(standin) as grafana:
        yield wecom, wecom_url, alertmanager.base_url, grafana.base_url


def check(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "alertbridge.toml"
    path.write_text(body, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "check-config", "--online", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "OPS_SECRET": OPS_SECRET, "WRONG_SECRET": WRONG_SECRET},
    )


def good_config(wecom_url: str, am_url: str, grafana_url: str) -> str:
    return f"""
[wecom]
api_base = "{wecom_url}"
[wecom.apps.ops]
corp_id = "wwonline"
agent_id = 1000002
secret = "${{OPS_SECRET}}"
[silencers.am]
kind = "alertmanager"
url = "{am_url}"
[silencers.grafana]
kind = "grafana"
url = "{grafana_url}"
token = "{GRAFANA_TOKEN}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
silencer = "am"
[receivers.room]
channel = "robot"
robot_key = "{ROBOT_KEY}"
"""


def test_a_working_config_passes_every_check_and_sends_nothing(
    tmp_path: Path, world: tuple[FakeWeCom, str, str, str]
) -> None:
    wecom, wecom_url, am_url, grafana_url = world
    result = check(tmp_path, good_config(wecom_url, am_url, grafana_url))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()[1:]
    assert [line.split()[:2] for line in lines] == [
        ["ok", "wecom.apps.ops:"],
        ["ok", "wecom.apps.ops.agent_id:"],
        ["ok", "receivers.room.robot_key:"],
        ["ok", "silencers.am.url:"],
        ["ok", "silencers.grafana.url:"],
    ]
    assert wecom.request_count(AGENT_GET) >= 1
    assert wecom.request_count(MESSAGE_SEND) == 0 and wecom.request_count(WEBHOOK_SEND) == 0
    assert OPS_SECRET not in result.stdout + result.stderr


def test_every_failure_is_one_line_naming_the_key_and_the_exit_is_non_zero(
    tmp_path: Path, world: tuple[FakeWeCom, str, str, str]
) -> None:
    _, wecom_url, am_url, grafana_url = world
    body = (
        good_config(wecom_url, am_url, grafana_url)
        .replace(f'url = "{am_url}"', f'url = ["{am_url}", "http://127.0.0.1:{free_port()}"]')
        .replace(f'token = "{GRAFANA_TOKEN}"', 'token = "glsa_revoked"')
        .replace(ROBOT_KEY, "not-a-robot-key")
        + """
[wecom.apps.bad]
corp_id = "wwonline"
agent_id = 1000002
secret = "${WRONG_SECRET}"
[wecom.apps.other]
corp_id = "wwonline"
agent_id = 1000009
secret = "${OPS_SECRET}"
"""
    )
    result = check(tmp_path, body)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "FAIL  wecom.apps.bad.secret: WeCom says 40001 invalid secret" in out.splitlines()
    assert "FAIL  wecom.apps.other.agent_id: WeCom says 301002 " in out
    assert "FAIL  receivers.room.robot_key: not shaped like a robot key" in out
    assert "ok    silencers.am.url:" in out and "FAIL  silencers.am.url: http://127.0.0.1:" in out
    assert "FAIL  silencers.grafana.token: " in out and "HTTP 401" in out
    assert "ok    wecom.apps.ops.agent_id:" in out
    for secret in (OPS_SECRET, WRONG_SECRET, "glsa_revoked", "not-a-robot-key"):
        assert secret not in out + result.stderr


def test_offline_check_config_makes_no_calls(tmp_path: Path, world: tuple[FakeWeCom, str, str, str]) -> None:
    wecom, wecom_url, am_url, grafana_url = world
    path = tmp_path / "alertbridge.toml"
    path.write_text(good_config(wecom_url, am_url, grafana_url).replace(ROBOT_KEY, "x"), encoding="utf-8")
    before = wecom.request_count(AGENT_GET)
    result = subprocess.run(
        [sys.executable, "-m", "alertbridge", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "OPS_SECRET": OPS_SECRET},
    )
    assert result.returncode == 0, result.stderr
    assert "ok " not in result.stdout and wecom.request_count(AGENT_GET) == before
