"""A running alertbridge with a callback-enabled WeCom app, seen from WeCom's
side: post an alert, send a member's reply through the encrypted callback,
wait for alertbridge's answer at the fake WeCom, read the audit.

The callback and command-authorisation tests drive it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from alertbridge.config import Config, parse_config
from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom
from alertbridge.testing.wecom_callback import CallbackClient
from tests.harness import free_port, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

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
        self._clients: list[CallbackClient] = []

    def callback(self, app: str = "ops") -> CallbackClient:
        client = CallbackClient(
            self.base_url,
            f"/wecom/callback/{app}",
            TOKEN,
            AES_KEY,
            CORP_ID,
            AGENT_ID,
            response_codes=self.wecom.new_response_code_for,
        )
        self._clients.append(client)
        return client

    def passive_to(self, user: str, msg_type: str = "text") -> list[str]:
        """Passive replies of this type the bridge answered callbacks for ``user`` with."""
        replies = [
            r for c in self._clients for r in c.passive if r.to_user == user and r.msg_type == msg_type
        ]
        return [r.content for r in sorted(replies, key=lambda r: r.received_at)]

    def post_alert(self, receiver: str = "oncall", payload: object = FIRING) -> None:
        response = httpx.post(f"{self.base_url}/alertmanager/{receiver}", json=payload, timeout=10)
        assert response.status_code == 200, response.text

    def replies_to(self, user: str) -> list[str]:
        """Every text reply ``user`` got, passive (in a callback response) or
        active (message/send), in the order they arrived."""
        active = [
            (m.timestamp, m.content or "")
            for m in self.wecom.messages(MESSAGE_SEND)
            if m.msgtype == "text" and m.to_user == (user,)
        ]
        passive = [
            (r.received_at, r.content)
            for c in self._clients
            for r in c.passive
            if r.to_user == user and r.msg_type == "text"
        ]
        return [text for _, text in sorted(active + passive, key=lambda pair: pair[0])]

    def active_replies_to(self, user: str) -> list[str]:
        """The text replies sent to ``user`` through message/send only."""
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


def callback_app(**settings: object) -> dict[str, object]:
    """[wecom.apps.ops] of tests/wecom_identity.py with its callback settings, plus ``settings``."""
    return {
        "corp_id": CORP_ID,
        "agent_id": AGENT_ID,
        "secret": SECRET,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
        **settings,
    }


def start_bridge(
    tmp_path: Path,
    serve_wecom: Callable[[FakeWeCom], str],
    serve_app: Callable[..., str],
    *,
    silencer_url: str | None = None,
    app_settings: Mapping[str, Any] | None = None,
    card_users: tuple[str, ...] = ("zhaoliu",),
) -> Bridge:
    """Serve the fake WeCom and an alertbridge (``bridge_config``) on SQLite."""
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    config = bridge_config(
        serve_wecom(wecom),
        f"sqlite:///{tmp_path / 'ab.db'}",
        silencer_url=silencer_url,
        app_settings=app_settings,
        card_users=card_users,
    )
    return Bridge(serve_app(config), wecom, tmp_path / "ab.db")


def bridge_config(
    wecom_url: str,
    store_url: str,
    *,
    silencer_url: str | None = None,
    app_settings: Mapping[str, Any] | None = None,
    card_users: tuple[str, ...] = ("zhaoliu",),
) -> Config:
    """An alertbridge whose app "ops" takes callbacks.

    Receivers: "oncall" (text to zhangsan and lisi; only lisi may silence,
    through the Alertmanager at ``silencer_url``, by default one that is down)
    and "cards" (template cards to ``card_users``, who may also silence).
    ``app_settings`` adds keys to
    [wecom.apps.ops].
    """
    return parse_config(
        {
            "server": {"language": "zh"},
            "store": {"url": store_url},
            "wecom": {
                "api_base": wecom_url,
                "apps": {
                    "ops": callback_app(**(app_settings or {})),
                    "nocallback": {"corp_id": CORP_ID, "agent_id": AGENT_ID, "secret": SECRET},
                },
            },
            "silencers": {
                "down": {
                    "kind": "alertmanager",
                    "url": silencer_url or f"http://127.0.0.1:{free_port()}",
                    "timeout": "10s" if silencer_url else "2s",
                }
            },
            "receivers": {
                "cards": {
                    "channel": "app",
                    "app": "ops",
                    "to_user": list(card_users),
                    "msgtype": "template_card",
                    "allow_silence": list(card_users),
                    "silencer": "down",
                },
                "oncall": {
                    "channel": "app",
                    "app": "ops",
                    "to_user": ["zhangsan", "lisi"],
                    "allow_silence": ["lisi"],
                    "silencer": "down",
                    "msgtype": "text",
                },
            },
        },
        {},
        "test.toml",
    )
