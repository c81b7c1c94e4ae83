"""End to end, two ways, with the real Alertmanager: an alert fires →
alertbridge sends a card → the user taps 静默1小时 (an encrypted callback) →
the silence exists in Alertmanager and suppresses the alert, and the card
says so → a text reply `unsilence` expires it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from alertbridge.testing.fake_wecom import MESSAGE_SEND
from alertbridge.testing.wecom_callback import CallbackClient
from tests.harness import AlertbridgeProcess, AlertmanagerProcess, free_port, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

TOKEN = "e2eCallbackToken"
AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


def test_button_silence_and_text_unsilence(
    tmp_path: Path, start_alertmanager: Callable[..., AlertmanagerProcess], fake_wecom
) -> None:  # type: ignore[no-untyped-def]
    wecom, wecom_url = fake_wecom
    # Alertmanager needs alertbridge's URL and alertbridge Alertmanager's: pick ports first.
    bridge_port = free_port()
    alertmanager = start_alertmanager(f"http://127.0.0.1:{bridge_port}/alertmanager/oncall")
    bridge = AlertbridgeProcess(
        tmp_path,
        f"""
[wecom]
api_base = "{wecom_url}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
token = "${{CALLBACK_TOKEN}}"
encoding_aes_key = "${{AES_KEY}}"
[silencers.main]
kind = "alertmanager"
url = ["http://127.0.0.1:{free_port()}", "{alertmanager.base_url}"]
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
msgtype = "template_card"
silencer = "main"
""",
        env={"SECRET": SECRET, "CALLBACK_TOKEN": TOKEN, "AES_KEY": AES_KEY},
        port=bridge_port,
    )
    bridge.start()
    am = httpx.Client(base_url=alertmanager.base_url, timeout=5)
    try:
        alertmanager.post_alerts(
            [
                {
                    "labels": {
                        "alertname": "QueueBacklog",
                        "queue": "orders",
                        "pod": "worker-7f9c",
                        "severity": "warning",
                    },
                    "annotations": {"summary": "orders 队列积压 12000 条"},
                    "startsAt": (datetime.now(UTC) - timedelta(minutes=3)).isoformat(),
                }
            ]
        )
        wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the card")
        card_message = wecom.messages(MESSAGE_SEND)[0]
        assert card_message.msgtype == "template_card"
        card = card_message.body["template_card"]
        assert card["card_type"] == "button_interaction"
        assert "#1" in card["main_title"]["title"]
        keys = {b["text"]: b["key"] for b in card["button_list"]}
        assert set(keys) == {"确认", "静默1小时", "静默24小时"}

        with CallbackClient(
            bridge.base_url,
            "/wecom/callback/ops",
            TOKEN,
            AES_KEY,
            CORP_ID,
            AGENT_ID,
            response_codes=wecom.new_response_code_for,
        ) as user:
            assert user.click_button("zhangsan", card["task_id"], keys["静默1小时"]).status_code == 200
            # Alertmanager answered within the reply budget: the click is answered
            # in the callback's response by greying out the clicked card's buttons.
            [update] = user.passive
            assert update.msg_type == "update_button" and update.content.startswith("已静默至")

            def our_silences() -> list[dict[str, object]]:
                return [s for s in am.get("/api/v2/silences").json() if s["createdBy"] == "zhangsan"]

            wait_until(
                lambda: [s for s in our_silences() if s["status"]["state"] == "active"], what="the silence"
            )
            [silence] = our_silences()
            matchers = {m["name"]: (m["value"], m["isRegex"]) for m in silence["matchers"]}
            # The volatile pod label is left out so a restarted pod stays silenced.
            assert matchers == {
                "alertname": ("QueueBacklog", False),
                "queue": ("orders", False),
                "severity": ("warning", False),
            }
            assert "via alertbridge" in str(silence["comment"])
            ends = datetime.fromisoformat(str(silence["endsAt"]).replace("Z", "+00:00"))
            assert timedelta(minutes=55) < ends - datetime.now(UTC) <= timedelta(hours=1, minutes=1)

            def suppressed() -> bool:
                alerts = am.get("/api/v2/alerts", params={"filter": 'alertname="QueueBacklog"'}).json()
                return bool(alerts) and alerts[0]["status"]["state"] == "suppressed"

            wait_until(suppressed, what="the alert to be suppressed")
            assert wecom.card_updates() == []

            user.send_text("zhangsan", f"取消静默 {silence['id']}")
            wait_until(
                lambda: our_silences()[0]["status"]["state"] == "expired", what="the silence to expire"
            )
            assert "已取消静默" in user.passive[-1].content
        audit = subprocess.run(
            [sys.executable, "-m", "alertbridge", "audit", "list", "-c", str(bridge.config_path)],
            capture_output=True,
            text=True,
            env=bridge.env,
            timeout=60,
            check=False,
        )
        assert audit.returncode == 0, audit.stderr
        assert "button:silence" in audit.stdout and silence["id"] in audit.stdout
        assert "unsilence" in audit.stdout
        # The same story in /metrics.
        scraped = httpx.get(f"{bridge.base_url}/metrics", timeout=10).text
        for line in (
            'alertbridge_commands_total{command="silence",outcome="ok"} 1.0',
            'alertbridge_commands_total{command="unsilence",outcome="ok"} 1.0',
            'alertbridge_silences_created_total{silencer="main"} 1.0',
            'alertbridge_silences_expired_total{silencer="main"} 1.0',
            'alertbridge_callback_requests_total{outcome="ok"} 2.0',
        ):
            assert line in scraped.splitlines(), line
    finally:
        am.close()
        bridge.kill()
    printed = bridge.stdout() + bridge.stderr()
    for secret in (SECRET, TOKEN, AES_KEY, *wecom.issued_tokens()):
        assert secret not in printed


def test_ack_silences_lasts_until_the_group_resolves(
    tmp_path: Path, start_alertmanager: Callable[..., AlertmanagerProcess], fake_wecom
) -> None:  # type: ignore[no-untyped-def]
    """``ack_silences``: ack creates a short silence that alertbridge keeps
    extending while the alert fires, and expires once nothing fires any more
    (Alertmanager sends no resolution for a silenced alert, so it must ask)."""
    wecom, wecom_url = fake_wecom
    bridge_port = free_port()
    alertmanager = start_alertmanager(f"http://127.0.0.1:{bridge_port}/alertmanager/oncall")
    bridge = AlertbridgeProcess(
        tmp_path,
        f"""
[wecom]
api_base = "{wecom_url}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "{SECRET}"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
[silencers.main]
kind = "alertmanager"
url = "{alertmanager.base_url}"
[commands]
ack_silence_step = "4s"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
msgtype = "markdown"
ack_silences = true
""",
        port=bridge_port,
    ).start()
    am = httpx.Client(base_url=alertmanager.base_url, timeout=5)
    alert = {
        "labels": {"alertname": "DiskSlow", "instance": "db-1"},
        "annotations": {"summary": "db-1 磁盘延迟高"},
        "startsAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    }
    try:
        alertmanager.post_alerts([alert])
        wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the alert message")
        with CallbackClient(
            bridge.base_url, "/wecom/callback/ops", TOKEN, AES_KEY, CORP_ID, AGENT_ID
        ) as user:
            user.send_text("zhangsan", "ack")
            assert "静默直到恢复" in user.passive[-1].content

            def active() -> list[dict[str, object]]:
                return [s for s in am.get("/api/v2/silences").json() if s["status"]["state"] == "active"]

            [first] = active()
            first_end = str(first["endsAt"])
            assert first["createdBy"] == "zhangsan"
            # Still firing: extended before it runs out (same matchers, so same id).
            wait_until(
                lambda: active() and str(active()[0]["endsAt"]) > first_end, timeout=15, what="an extension"
            )
            assert active()[0]["id"] == first["id"]

            user.send_text("zhangsan", "告警")
            assert "#1 DiskSlow" in user.passive[-1].content
            user.send_text("zhangsan", "静默列表")
            assert str(first["id"]) in user.passive[-1].content

            # Resolve it: the silence goes away without waiting for a webhook.
            alertmanager.post_alerts(
                [{**alert, "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}]
            )
            wait_until(lambda: not active(), timeout=15, what="the ack silence to expire")
    finally:
        am.close()
        bridge.kill()
