"""Grafana end to end: a unified-alerting webhook (HMAC-signed) arrives with
its values, `silence 1 1h` creates the silence in Grafana (a loopback
stand-in in front of a real Alertmanager), and a legacy alert says clearly
that it cannot be silenced."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from alertbridge.sources.grafana_signature import sign
from alertbridge.testing.fake_wecom import MESSAGE_SEND
from alertbridge.testing.grafana_standin import GrafanaStandin
from alertbridge.testing.server import ServerThread
from alertbridge.testing.wecom_callback import CallbackClient
from tests.harness import AlertbridgeProcess, AlertmanagerProcess, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

DATA = Path(__file__).parent / "data" / "grafana"
TOKEN = "grafanaE2eToken"
AES_KEY = "0123456789abcdefghijABCDEFGHIJklmnopqrstUVW"
GRAFANA_TOKEN = "glsa_e2e_service_account_token"
HMAC_SECRET = "hmac-e2e-secret-1234"


def post_signed(bridge: AlertbridgeProcess, body: bytes) -> httpx.Response:
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Grafana-Alerting-Signature": sign(HMAC_SECRET, body, ts),
        "X-Grafana-Alerting-Timestamp": ts,
    }
    return httpx.post(f"{bridge.base_url}/grafana/oncall", content=body, headers=headers, timeout=10)


def test_grafana_alert_with_values_then_silence_by_reply(
    tmp_path: Path, start_alertmanager: Callable[..., AlertmanagerProcess], fake_wecom
) -> None:  # type: ignore[no-untyped-def]
    wecom, wecom_url = fake_wecom
    alertmanager = start_alertmanager()
    standin = ServerThread(GrafanaStandin(alertmanager.base_url, GRAFANA_TOKEN))
    grafana_url = standin.start()
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
[silencers.grafana]
kind = "grafana"
url = "{grafana_url}"
token = "${{GRAFANA_TOKEN}}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
grafana_hmac_secret = "${{HMAC_SECRET}}"
""",
        env={"GRAFANA_TOKEN": GRAFANA_TOKEN, "HMAC_SECRET": HMAC_SECRET},
    ).start()
    try:
        payload = json.loads((DATA / "unified-firing.json").read_text(encoding="utf-8"))
        payload["alerts"][0]["startsAt"] = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        body = json.dumps(payload).encode()
        unsigned = httpx.post(
            f"{bridge.base_url}/grafana/oncall",
            content=body,
            timeout=10,
            headers={"Content-Type": "application/json"},
        )
        assert unsigned.status_code == 401
        assert post_signed(bridge, body).status_code == 200
        wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the alert")
        alert_text = wecom.messages(MESSAGE_SEND)[0].content or ""
        assert "#1" in alert_text and "DiskAlmostFull" in alert_text
        assert "A=" in alert_text  # Grafana's values are shown

        labels = payload["alerts"][0]["labels"]
        with CallbackClient(
            bridge.base_url, "/wecom/callback/ops", TOKEN, AES_KEY, CORP_ID, AGENT_ID
        ) as user:
            user.send_text("zhangsan", "silence #1 1h 扩容中")

            def silences() -> list[dict[str, object]]:
                response = httpx.get(f"{alertmanager.base_url}/api/v2/silences", timeout=5)
                return [s for s in response.json() if s["createdBy"] == "zhangsan"]

            wait_until(silences, what="the Grafana silence")
            [silence] = silences()
            matchers = {m["name"]: m["value"] for m in silence["matchers"]}  # type: ignore[union-attr]
            assert matchers["alertname"] == labels["alertname"]
            assert "扩容中" in str(silence["comment"])
            # Answered in the callback's response (Grafana answered within the budget).
            reply = user.passive[-1].content
            assert str(silence["id"]) in reply
            assert f"{grafana_url}/alerting/silence/{silence['id']}" in reply

            legacy = (DATA / "legacy-alerting.json").read_bytes()
            assert post_signed(bridge, legacy).status_code == 200
            wait_until(
                lambda: any("#2" in (m.content or "") for m in wecom.messages(MESSAGE_SEND)),
                what="legacy alert",
            )
            user.send_text("zhangsan", "静默 2 1h")
            assert "旧版 Grafana" in user.passive[-1].content
        assert len(silences()) == 1
    finally:
        bridge.kill()
        standin.stop()
    printed = bridge.stdout() + bridge.stderr()
    for secret in (SECRET, TOKEN, AES_KEY, GRAFANA_TOKEN, HMAC_SECRET):
        assert secret not in printed
