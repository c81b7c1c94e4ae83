"""The app menu: ``menu_commands`` validation and ``alertbridge menu install``
against the fake WeCom's ``menu/create``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from alertbridge.errors import ConfigError
from alertbridge.testing.fake_wecom import FakeWeCom
from tests.config_builder import build_config
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET


def _app(menu: object) -> dict[str, object]:
    return {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET, "menu_commands": menu}


def test_menu_commands_are_checked_at_load(tmp_path: Path) -> None:
    config = build_config(
        tmp_path / "db", wecom={"apps": {"ops": _app({"我的告警": "alerts", "帮助": "help"})}}
    )
    assert config.wecom.apps["ops"].menu_commands == {"我的告警": "alerts", "帮助": "help"}
    for menu, problem in (
        ({"a": "alerts", "b": "help", "c": "silences", "d": "ack"}, "at most 3"),
        ({"告警告警告警": "alerts"}, "1-16 bytes"),  # 18 bytes
        ({"告警": "alrets"}, "no command"),
        ({"静默": "silence"}, "no command"),  # needs a reference and a duration
    ):
        with pytest.raises(ConfigError, match=problem):
            build_config(tmp_path / "db", wecom={"apps": {"ops": _app(menu)}})


def _install(
    tmp_path: Path, api_base: str, app: str, menu: str, agent_id: int = AGENT_ID
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "alertbridge.toml"
    path.write_text(
        f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {agent_id}
secret = "${{SECRET}}"
{menu}
""",
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", "menu", "install", "-c", str(path), "--app", app],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SECRET": SECRET},
        check=False,
    )


def test_menu_install_uploads_the_menu(tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]) -> None:
    wecom, base_url = fake_wecom
    done = _install(
        tmp_path, base_url, "ops", 'menu_commands = { "我的告警" = "alerts", "静默列表" = "silences" }'
    )
    assert done.returncode == 0, done.stderr
    assert "我的告警 → alerts" in done.stdout
    assert wecom.menus.menu(AGENT_ID) == [
        {"type": "click", "name": "我的告警", "key": "我的告警"},
        {"type": "click", "name": "静默列表", "key": "静默列表"},
    ]


def test_menu_install_refuses_without_a_menu_or_app(
    tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]
) -> None:
    wecom, base_url = fake_wecom
    assert "no app 'nope'" in _install(tmp_path, base_url, "nope", "").stdout
    assert "no menu_commands" in _install(tmp_path, base_url, "ops", "").stdout
    assert wecom.menus.requests == 0


def test_menu_install_reports_wecoms_refusal(tmp_path: Path, fake_wecom: tuple[FakeWeCom, str]) -> None:
    wecom, base_url = fake_wecom
    # The secret is the app's, the agent id another's: WeCom answers 301002.
    done = _install(tmp_path, base_url, "ops", 'menu_commands = { "帮助" = "help" }', agent_id=AGENT_ID + 1)
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "301002" in done.stdout
    assert wecom.menus.menu(AGENT_ID + 1) is None


def test_the_fake_checks_menus_as_wecom_does(fake_wecom: tuple[FakeWeCom, str]) -> None:
    _, base_url = fake_wecom
    with httpx.Client(base_url=base_url, timeout=5) as http:
        token = http.get("/cgi-bin/gettoken", params={"corpid": CORP_ID, "corpsecret": SECRET}).json()[
            "access_token"
        ]

        def create(body: object, agent_id: object = AGENT_ID) -> int:
            params = {"access_token": token, "agentid": str(agent_id)}
            return int(http.post("/cgi-bin/menu/create", params=params, json=body).json()["errcode"])

        click = {"type": "click", "name": "告警", "key": "alerts"}
        assert create({"button": [click]}) == 0
        assert create({"button": [click] * 4}) == 40016
        assert create({"button": []}) == 40016
        assert create({"button": [{**click, "type": "tap"}]}) == 40017
        assert create({"button": [{**click, "name": "告警" * 3}]}) == 40018
        assert create({"button": [{**click, "key": ""}]}) == 40019
        assert create({"button": [{"name": "更多", "sub_button": [click] * 6}]}) == 40016
        assert create({"button": [{"name": "更多", "sub_button": [click]}]}) == 0
        assert create({"button": [click]}, agent_id=AGENT_ID + 1) == 301002
        assert create({"button": [click]}, agent_id="x") == 40056
