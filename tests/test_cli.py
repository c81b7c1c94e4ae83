"""The CLI commands users run by hand: render and send-test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND, Fault
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "SECRET": SECRET, "ROBOT_KEY": ROBOT_KEY},
    )


def write_config(tmp_path: Path, api_base: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "alertbridge.toml"
    path.write_text(
        f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
[receivers.room]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
msgtype = "markdown"
language = "en"
""",
        encoding="utf-8",
    )
    return path


def test_check_config_warns_when_webhooks_are_unauthenticated(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    open_config = run("check-config", "-c", str(path))
    assert open_config.returncode == 0, open_config.stderr
    assert "webhook_auth: warning: [webhook_auth] is not set" in open_config.stderr
    assert "reload" not in open_config.stderr  # off by default without credentials
    path.write_text(path.read_text(encoding="utf-8") + "[server]\nreload_endpoint = true\n", encoding="utf-8")
    assert "anyone can trigger POST /-/reload" in run("check-config", "-c", str(path)).stderr
    path.write_text(
        path.read_text(encoding="utf-8") + '[webhook_auth]\nbearer_token = "webhook-token-1234"\n',
        encoding="utf-8",
    )
    guarded = run("check-config", "-c", str(path))
    assert guarded.returncode == 0 and "warning" not in guarded.stderr, guarded.stderr


def test_render_prints_every_message_with_its_byte_count(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run(
        "render",
        "-c",
        str(config),
        "--receiver",
        "oncall",
        "--payload",
        str(REPO / "examples" / "alertmanager-firing.json"),
    )
    assert result.returncode == 0, result.stderr
    header = re.search(r"message 1/1 · markdown · (\d+)/2048 bytes", result.stdout)
    assert header is not None
    body = result.stdout.split("\n", 1)[1].rstrip("\n")
    assert int(header.group(1)) == len(body.encode())
    assert "HighCPUUsage" in body and "web-2:9100" in body


def test_render_splits_to_the_robot_markdown_limit(tmp_path: Path) -> None:
    import json

    payload = json.loads((REPO / "examples" / "alertmanager-firing.json").read_text(encoding="utf-8"))
    alert = payload["alerts"][0]
    payload["alerts"] = [
        {**alert, "labels": {**alert["labels"], "instance": f"web-{i}:9100"}, "fingerprint": f"{i:016x}"}
        for i in range(60)
    ]
    big = tmp_path / "big.json"
    big.write_text(json.dumps(payload), encoding="utf-8")
    result = run("render", "-c", str(write_config(tmp_path)), "--receiver", "room", "--payload", str(big))
    assert result.returncode == 0, result.stderr
    sizes = [(int(a), int(b)) for a, b in re.findall(r"· (\d+)/(\d+) bytes", result.stdout)]
    assert len(sizes) > 1
    assert all(size <= limit == 4096 for size, limit in sizes)


def test_render_rejects_a_bad_payload_and_unknown_receiver(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    result = run("render", "-c", str(config), "--receiver", "oncall", "--payload", str(bad))
    assert result.returncode == 1
    assert "invalid alertmanager payload" in result.stderr
    unknown = run("render", "-c", str(config), "--receiver", "nope", "--payload", str(bad))
    assert unknown.returncode == 1
    assert "no receiver 'nope'" in unknown.stderr


def test_send_test_goes_through_the_real_client(tmp_path: Path, fake_wecom) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake_wecom
    config = write_config(tmp_path, base_url)
    app = run("send-test", "-c", str(config), "--receiver", "oncall")
    assert app.returncode == 0, app.stderr
    assert "sent part 1/1 to oncall" in app.stdout
    robot = run("send-test", "-c", str(config), "--receiver", "room")
    assert robot.returncode == 0, robot.stderr
    assert len(wecom.messages(MESSAGE_SEND)) == 1 and len(wecom.messages(WEBHOOK_SEND)) == 1
    assert wecom.messages(MESSAGE_SEND)[0].to_user == ("zhangsan",)
    # Marked as a test on its first line, so nobody acts on the sample alert.
    for message in (*wecom.messages(MESSAGE_SEND), *wecom.messages(WEBHOOK_SEND)):
        assert message.content is not None
        assert message.content.splitlines()[0].startswith(("【测试】", "[TEST]"))


def test_send_test_reports_failures_without_secrets(tmp_path: Path, fake_wecom) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake_wecom
    wecom.add_fault(MESSAGE_SEND, Fault(errcode=60020, errmsg="not allow to access from your ip"))
    result = run("send-test", "-c", str(write_config(tmp_path, base_url)), "--receiver", "oncall")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "60020" in result.stdout
    for secret in (SECRET, *wecom.issued_tokens()):
        assert secret not in result.stdout + result.stderr
