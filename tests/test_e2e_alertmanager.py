"""End to end with the real Alertmanager (Debian ``prometheus-alertmanager``).

Alerts posted to Alertmanager's API are grouped by it, sent to a real
``alertbridge serve`` with a bearer token, and arrive rendered at the fake
WeCom — then their resolution does too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alertbridge.testing.fake_wecom import MESSAGE_SEND, WEBHOOK_SEND
from tests.harness import AlertbridgeProcess, AlertmanagerProcess, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

TOKEN = "e2e-webhook-token-5e6f7a8b"


@pytest.mark.parametrize("receiver", ["oncall", "sre-room"])
def test_alertmanager_to_wecom(
    tmp_path: Path, start_alertmanager: Callable[..., AlertmanagerProcess], fake_wecom, receiver: str
) -> None:  # type: ignore[no-untyped-def]
    wecom, base_url = fake_wecom
    bridge = AlertbridgeProcess(
        tmp_path,
        f"""
[webhook_auth]
bearer_token = "{TOKEN}"
[wecom]
api_base = "{base_url}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
[receivers.sre-room]
channel = "robot"
robot_key = "${{ROBOT_KEY}}"
msgtype = "text"
""",
        env={"SECRET": SECRET, "ROBOT_KEY": ROBOT_KEY},
    ).start()
    try:
        alertmanager = start_alertmanager(f"{bridge.base_url}/alertmanager/{receiver}", TOKEN)
        now = datetime.now(UTC)
        alerts = [
            {
                "labels": {"alertname": "DiskFull", "instance": f"db-{i}:9100", "severity": "critical"},
                "annotations": {"summary": f"db-{i} 磁盘将满"},
                "startsAt": (now - timedelta(minutes=5)).isoformat(),
                "generatorURL": "http://prometheus.test/graph",
            }
            for i in (1, 2)
        ]
        alertmanager.post_alerts(alerts)
        endpoint = MESSAGE_SEND if receiver == "oncall" else WEBHOOK_SEND
        wait_until(lambda: len(wecom.messages(endpoint)) >= 1)
        firing = wecom.messages(endpoint)[0]
        assert firing.content is not None
        assert "DiskFull" in firing.content
        assert "db-1:9100" in firing.content and "db-2:9100" in firing.content
        assert "db-1 磁盘将满" in firing.content
        assert alertmanager.base_url in firing.content  # the silence link points at this Alertmanager
        if receiver == "oncall":
            assert firing.to_user == ("zhangsan",)

        # Resolve both: Alertmanager sends the resolution, alertbridge forwards it.
        for alert in alerts:
            alert["endsAt"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        alertmanager.post_alerts(alerts)
        wait_until(lambda: len(wecom.messages(endpoint)) >= 2)
        resolved = wecom.messages(endpoint)[-1].content or ""
        assert "DiskFull" in resolved
        assert "恢复" in resolved
    finally:
        bridge.kill()
    printed = bridge.stdout() + bridge.stderr()
    assert "webhook_accepted" in printed
    for secret in (SECRET, ROBOT_KEY, TOKEN, *wecom.issued_tokens()):
        assert secret not in printed
