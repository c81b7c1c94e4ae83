"""A running alertbridge with a callback-enabled WeCom app, seen from WeCom's
side: post an alert, send a member's reply through the encrypted callback,
wait for alertbridge's answer at the fake WeCom, read the audit.

The callback and command-authorisation tests drive it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx

from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeWeCom
from alertbridge.testing.wecom_callback import CallbackClient
from tests.harness import wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID

DATA = Path(__file__).parent / "data"
# The Alertmanager notification the bridge posts by default, as JSON.
FIRING = json.loads((DATA / "alertmanager" / "firing.json").read_text(encoding="utf-8"))
# The callback app's token and EncodingAESKey (43 characters, as WeCom's).
TOKEN = "cbToken12345"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


class Bridge:
    """The running app at ``base_url``, its fake WeCom and its database."""

    def __init__(self, base_url: str, wecom: FakeWeCom, db: Path) -> None:
        self.base_url = base_url
        self.wecom = wecom
        self.db = db

    def callback(self, app: str = "ops") -> CallbackClient:
        return CallbackClient(
            self.base_url,
            f"/wecom/callback/{app}",
            TOKEN,
            AES_KEY,
            CORP_ID,
            AGENT_ID,
            response_codes=self.wecom.new_response_code_for,
        )

    def post_alert(self, receiver: str = "oncall", payload: object = FIRING) -> None:
        response = httpx.post(f"{self.base_url}/alertmanager/{receiver}", json=payload, timeout=10)
        assert response.status_code == 200, response.text

    def replies_to(self, user: str) -> list[str]:
        return [
            m.content or ""
            for m in self.wecom.messages(MESSAGE_SEND)
            if m.msgtype == "text" and m.to_user == (user,)
        ]

    def wait_reply(self, user: str, count: int = 1) -> str:
        wait_until(lambda: len(self.replies_to(user)) >= count)
        return self.replies_to(user)[count - 1]

    def pending_deliveries(self) -> int:
        with sqlite3.connect(self.db) as db:
            return int(db.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()[0])

    def audit(self) -> list[tuple[str, str, str]]:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT user_id, action, result FROM audit ORDER BY id").fetchall()
