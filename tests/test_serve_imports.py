"""``alertbridge serve`` imports only what serving its config needs: no test,
fake or CLI-only module, nothing a feature it has not configured would use
(WeCom callbacks, silencers), and neither httpx's own command line nor
uvicorn's watchfiles reloader. Each of those is resident memory for the
life of the service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from alertbridge.testing.wecom_callback import CallbackClient
from tests.harness import AlertbridgeProcess, free_port
from tests.wecom_identity import AGENT_ID, CORP_ID, wecom_toml

# Serve as the command does, but report sys.modules instead of serving.
# uvicorn is imported where serve imports it, after main() has set up imports.
_SERVE_AND_REPORT = """
import sys
from alertbridge import cli

def report(server, sockets=None):
    import gc

    print("\\n".join(sorted(name for name, module in sys.modules.items() if module is not None)))
    print(f"#frozen={gc.get_freeze_count()}")

def serve(args):
    import uvicorn

    uvicorn.Server.run = report
    return run_serve(args)

run_serve, cli._serve = cli._serve, serve
sys.exit(cli.main(["serve", "-c", sys.argv[1]]))
"""

TOKEN = "cbToken12345"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CALLBACK_KEYS = f'token = "{TOKEN}"\nencoding_aes_key = "{AES_KEY}"\n'
RECEIVERS = '[receivers.oncall]\nchannel = "app"\napp = "ops"\nto_user = ["member1"]\n'
SILENCER = '[silencers.am]\nkind = "alertmanager"\nurl = ["http://127.0.0.1:9"]\n'

# Never in a serving process: tests and fakes, CLI-only commands, httpx's CLI
# (click, pygments, rich), uvicorn's watchfiles reloader, property-testing.
NEVER = (
    "tests",
    "alertbridge.testing",
    "pytest",
    "_pytest",
    "hypothesis",
    "pygments",
    "rich",
    "httpx._main",
    "watchfiles",
    "uvicorn.supervisors.watchfilesreload",
    "alertbridge.store_cli",
    "alertbridge.preview_cli",
    "alertbridge.preview",
    "alertbridge.online_check",
    "alertbridge.messengers.wecom.appchat_cli",
    "alertbridge.messengers.wecom.menu_install",
    "alertbridge.messengers.wecom.oneoff",
)
# Only when an app has callback keys.
CALLBACKS = (
    "alertbridge.messengers.wecom.callback",
    "alertbridge.messengers.wecom.crypto",
    "alertbridge.commands.executor",
    "Crypto",
    "xml.parsers.expat",
)
# Only when a silencer is configured.
SILENCERS = ("alertbridge.silencers.api_v2", "alertbridge.silencers.alertmanager")


def serve_imports(tmp_path: Path, body: str) -> set[str]:
    config = tmp_path / "alertbridge.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "ab.db"}"\n' + body,
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-c", _SERVE_AND_REPORT, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def wecom_head(keys: str = "") -> str:
    """The fake corp's [wecom] head, its app ``ops`` given ``keys`` (callback keys or none)."""
    return wecom_toml("http://127.0.0.1:9").replace(
        f"agent_id = {AGENT_ID}\n", f"agent_id = {AGENT_ID}\n{keys}"
    )


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_serve_imports_only_what_its_config_needs(tmp_path: Path) -> None:
    modules = serve_imports(tmp_path, wecom_head() + RECEIVERS)
    assert "alertbridge.app" in modules and "alertbridge.messengers.wecom.messenger" in modules
    assert loaded(modules, NEVER + CALLBACKS + SILENCERS) == []


def test_what_serve_built_before_serving_is_out_of_the_collectors_reach(tmp_path: Path) -> None:
    """gc.freeze() before serving: full collections skip the start-up's objects."""
    modules = serve_imports(tmp_path, wecom_head() + RECEIVERS)
    (frozen,) = (int(m.removeprefix("#frozen=")) for m in modules if m.startswith("#frozen="))
    assert frozen > 10_000


def test_callbacks_and_silencers_are_imported_when_configured(tmp_path: Path) -> None:
    modules = serve_imports(tmp_path, wecom_head(CALLBACK_KEYS) + RECEIVERS + SILENCER)
    assert set(loaded(modules, CALLBACKS + SILENCERS)) >= {*CALLBACKS, *SILENCERS}
    assert loaded(modules, NEVER) == []


@pytest.fixture
def bridge(tmp_path: Path) -> AlertbridgeProcess:
    return AlertbridgeProcess(tmp_path, _reloadable(""), env={"WEBHOOK_TOKEN": "reload-token-0123456"})


def _reloadable(keys: str) -> str:
    return '[webhook_auth]\nbearer_token = "${WEBHOOK_TOKEN}"\n' + wecom_head(keys) + RECEIVERS


def test_callback_keys_added_by_a_reload_are_served(bridge: AlertbridgeProcess) -> None:
    bridge.start()
    try:
        url = f"{bridge.base_url}/wecom/callback/ops"
        answer = httpx.get(url, params={"echostr": "x"}, timeout=10)
        assert (answer.status_code, answer.text) == (404, "no callback configured for this app\n")
        metrics = httpx.get(f"{bridge.base_url}/metrics", timeout=10).text
        assert 'alertbridge_callback_requests_total{outcome="unknown_app"} 1.0' in metrics

        bridge.write_config(_reloadable(CALLBACK_KEYS))
        reloaded = httpx.post(
            f"{bridge.base_url}/-/reload",
            headers={"Authorization": "Bearer reload-token-0123456"},
            timeout=15,
        )
        assert reloaded.status_code == 200, reloaded.text
        with CallbackClient(
            bridge.base_url, "/wecom/callback/ops", TOKEN, AES_KEY, CORP_ID, AGENT_ID
        ) as wecom:
            verified = wecom.verify_url("1616140317555161061")
        assert (verified.status_code, verified.content) == (200, b"1616140317555161061")
    finally:
        bridge.stop()
