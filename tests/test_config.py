"""Config loading: env substitution, validation, and messages naming file and key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alertbridge.config import load_config
from alertbridge.errors import ConfigError
from alertbridge.messengers.wecom.config import AppChatReceiver, AppReceiver, RobotReceiver

REPO = Path(__file__).resolve().parent.parent

APP_AND_ROBOT = """
[wecom.apps.ops]
corp_id = "ww0123456789abcdef"
agent_id = 1000002
secret = "${WECOM_OPS_SECRET}"

[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan", "lisi"]
msgtype = "markdown"

[receivers.sre-room]
channel = "robot"
robot_key = "${WECOM_ROBOT_KEY:-fallback-key}"
msgtype = "text"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alertbridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    message = str(info.value)
    assert all(line.startswith(f"{path}: ") for line in message.splitlines()), message
    return message


def test_example_config_loads_with_defaults() -> None:
    config = load_config(REPO / "config.example.toml", {})
    assert config.server.listen == "127.0.0.1:8080"
    assert config.server.language == "zh"
    assert config.store.url == "sqlite:///./data/alertbridge.db"
    assert list(config.receivers) == ["console"]
    assert config.receivers["console"].channel == "console"


def test_env_substitution_and_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, APP_AND_ROBOT), {"WECOM_OPS_SECRET": "s3cret-value"})
    assert config.wecom.apps["ops"].secret.get_secret_value() == "s3cret-value"
    robot = config.receivers["sre-room"]
    assert isinstance(robot, RobotReceiver)
    assert robot.robot_key.get_secret_value() == "fallback-key"
    oncall = config.receivers["oncall"]
    assert isinstance(oncall, AppReceiver) and oncall.to_user == ["zhangsan", "lisi"]
    # Secrets do not show in reprs (which end up in tracebacks and logs).
    assert "s3cret-value" not in repr(config)
    assert set(config.secrets()) == {"s3cret-value", "fallback-key"}


def test_missing_env_var_is_named(tmp_path: Path) -> None:
    message = problems(tmp_path, APP_AND_ROBOT)
    assert "wecom.apps.ops.secret: environment variable WECOM_OPS_SECRET is not set" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nlisten = 8080\n", "server.listen: Input should be a valid string"),
        ('[server]\nlisten = "localhost"\n', "server.listen: expected HOST:PORT"),
        ('[server]\ntimezone = "Asia/Nowhere"\n', "server.timezone: unknown timezone 'Asia/Nowhere'"),
        ('[server]\nlanguage = "fr"\n', "server.language: Input should be 'zh' or 'en'"),
        ("[server]\nbogus = 1\n", "server.bogus: unknown key"),
        ('[server]\nheader_timeout = "0s"\n', "server.header_timeout: must be longer than 0s"),
        (
            "[server]\nmax_header_bytes = 100\n",
            "server.max_header_bytes: Input should be greater than or equal to 1024",
        ),
        ("[server]\nmax_connections = 0\n", "server.max_connections: Input should be greater than 0"),
        ("surprise = true\n", "surprise: unknown key"),
        ('[store]\nurl = "mysql://x"\n', "store.url: only sqlite:///PATH is supported"),
        (
            '[receivers.x]\nchannel = "email"\n',
            "receivers.x: channel must be one of: app, appchat, robot, console",
        ),
        ('[receivers.x]\nmsgtype = "text"\n', "receivers.x: channel is missing"),
        (
            '[receivers.x]\nchannel = "console"\nmsgtype = "news"\n',
            "receivers.x.msgtype: Input should be 'text' or 'markdown'",
        ),
        ('[receivers.x]\nchannel = "robot"\n', "receivers.x.robot_key: required key is missing"),
        ('[receivers.x]\nchannel = "robot"\nrobot_key = ""\n', "receivers.x.robot_key: is empty"),
        (
            '[receivers.x]\nchannel = "app"\napp = "ops"\nto_user = ["a"]\n',
            "receivers.x.app: no app 'ops' in [wecom.apps] (none defined)",
        ),
        (
            '[wecom.apps.ops]\ncorp_id = "c"\nagent_id = 1\nsecret = "s"\n'
            '[receivers.x]\nchannel = "app"\napp = "ops"\n',
            "receivers.x: an app receiver needs at least one of to_user, to_party, to_tag",
        ),
        ('[wecom.apps.ops]\ncorp_id = "c"\nagent_id = 1\n', "wecom.apps.ops.secret: required key is missing"),
        ('[wecom]\napi_base = "qyapi.weixin.qq.com"\n', "wecom.api_base: must be an http:// or https:// URL"),
        ('[delivery]\nmax_age = "forever"\n', "delivery.max_age: invalid duration 'forever'"),
        ('[receivers."bad name"]\nchannel = "console"\n', 'receivers."bad name": receiver names may use'),
        ("[server\n", "not valid TOML"),
        (
            '[wecom.apps.ops]\ncorp_id = "c"\nagent_id = 1\nsecret = "s"\ntoken = "t"\nencoding_aes_key = "short"\n',
            "wecom.apps.ops.encoding_aes_key: must be exactly 43 letters or digits",
        ),
        (
            '[wecom.apps.ops]\ncorp_id = "c"\nagent_id = 1\nsecret = "s"\ntoken = "bad token!"\n',
            "wecom.apps.ops.token: must be 1-32 letters or digits",
        ),
        (
            '[wecom.apps.ops]\ncorp_id = "c"\nagent_id = 1\nsecret = "s"\ntoken = "t"\n',
            "wecom.apps.ops: set both token and encoding_aes_key",
        ),
        (
            '[wecom.apps.ops]\ncorp_id = "c"\nagent_id = 1\nsecret = "s"\n'
            '[receivers.x]\nchannel = "app"\napp = "ops"\nto_user = ["a"]\nmsgtype = "template_card"\n',
            "receivers.x.msgtype: template_card buttons call back: set token and encoding_aes_key",
        ),
        (
            '[receivers.x]\nchannel = "console"\nsilencer = "am"\n',
            "receivers.x.silencer: no silencer 'am' in [silencers] (none defined)",
        ),
        (
            '[receivers.x]\nchannel = "console"\nack_silences = true\n',
            "receivers.x.ack_silences: needs `silencer`",
        ),
        (
            '[silencers.am]\nkind = "alertmanager"\nurl = "am:9093"\n',
            "silencers.am.url: must be http:// or https://",
        ),
        ('[commands]\nmax_silence = "0s"\n', "commands.max_silence"),
        ('[images]\nallow = ["bad host/x"]\n', "images.allow: 'bad host/x': expected a host"),
    ],
)
def test_each_rule_has_a_clear_message(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in problems(tmp_path, text)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    message = problems(tmp_path, '[server]\nbogus = 1\ntimezone = "X/Y"\n')
    assert len(message.splitlines()) == 2


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", {})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_check_config_cli_ok_and_failure(tmp_path: Path) -> None:
    ok = run_cli("check-config", "-c", str(REPO / "config.example.toml"))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout

    bad = write(tmp_path, '[receivers.x]\nchannel = "app"\napp = "nope"\nto_user = ["a"]\n')
    failed = run_cli("check-config", "-c", str(bad))
    assert failed.returncode == 1
    assert f"{bad}: receivers.x.app: no app 'nope'" in failed.stderr


def test_check_config_reports_broken_and_missing_templates(tmp_path: Path) -> None:
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "broken.zh.markdown.j2").write_text("{% for a in alerts %}\nno end\n", encoding="utf-8")
    config = write(
        tmp_path,
        f'[templates]\ndir = "{templates}"\n'
        '[receivers.a]\nchannel = "console"\ntemplate = "broken"\n'
        '[receivers.b]\nchannel = "console"\ntemplate = "absent"\n',
    )
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 1
    assert "receivers.a.template" in result.stderr and "broken.zh.markdown.j2" in result.stderr
    assert "receivers.b.template" in result.stderr and "absent" in result.stderr


def test_every_commented_example_in_the_example_config_is_valid(tmp_path: Path) -> None:
    """Uncommenting the documented examples must give a working config."""
    example = (REPO / "config.example.toml").read_text(encoding="utf-8")
    setting = re.compile(
        r"^# (\[(wecom\.apps|silencers|receivers|webhook_auth)[^\]]*\].*|[a-z_]+ = .*|  \{ action.*|\]\s*(#.*)?)$"
    )
    lines = [line[2:] if setting.match(line) else line for line in example.splitlines()]
    config = load_config(
        write(tmp_path, "\n".join(lines)),
        {
            "WECOM_OPS_SECRET": "s",
            "WECOM_ROBOT_KEY": "k",
            "ALERTBRIDGE_WEBHOOK_TOKEN": "t",
            "ALERTBRIDGE_WEBHOOK_PASSWORD": "p",
            "ALERTMANAGER_TOKEN": "a",
            "GRAFANA_SA_TOKEN": "g",
            "WECOM_OPS_CALLBACK_TOKEN": "abc",
            "WECOM_OPS_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        },
    )
    assert set(config.receivers) == {"console", "oncall", "oncall-room", "sre-room"}
    assert set(config.silencers) == {"main", "grafana"}
    assert isinstance(config.receivers["oncall-room"], AppChatReceiver)
    oncall = config.receivers["oncall"]
    assert (
        isinstance(oncall, AppReceiver) and oncall.extra_recipients is not None and len(oncall.buttons) == 3
    )
    robot = config.receivers["sre-room"]
    assert isinstance(robot, RobotReceiver) and robot.mention is not None


def test_a_postgresql_store_url_takes_its_password_from_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[store]\nurl = "postgresql://alertbridge:${DB_PASSWORD}@db:5432/alertbridge?sslmode=require"\n'
        "pool_size = 4\n",
    )
    config = load_config(path, {"DB_PASSWORD": "s3cret-wörd"})
    assert config.store.is_postgres and config.store.pool_size == 4
    assert config.store.url == "postgresql://alertbridge:s3cret-wörd@db:5432/alertbridge?sslmode=require"
    assert "s3cret-wörd" in config.secrets()
    # The password is redacted from logs like every other secret, as written and decoded.
    encoded = load_config(write(tmp_path, '[store]\nurl = "postgres://u:${P}@db/ab"\n'), {"P": "p%40ss%2Fw"})
    assert {"p%40ss%2Fw", "p@ss/w"} <= set(encoded.secrets())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql:///alertbridge", "store.url: postgresql:// needs a host"),
        ("postgresql://u:secret-pw@db:5432/", "store.url: postgresql:// needs a database"),
        ("postgresql://u:secret-pw@db:port/ab", "store.url: not a valid postgresql:// URL"),
    ],
)
def test_a_bad_postgresql_url_is_refused_without_showing_it(tmp_path: Path, url: str, message: str) -> None:
    found = problems(tmp_path, f'[store]\nurl = "{url}"\n')
    assert message in found
    assert "secret-pw" not in found
