"""The fake corp the tests talk to: its ids and credentials, in one place.

Values only need to look like WeCom's (a ``ww…`` corp id, an agent id in the
100000x range) and be secret-looking enough for the tests that check secrets
never reach a log or a message.
"""

from __future__ import annotations

CORP_ID = "ww7c3a9e0d1f2b4c5a"
SECRET = "corp-secret-Zq8XvT2pLm9RwK4s"
AGENT_ID = 1000002
ROBOT_KEY = "robot-key-6f1d2c3b-aaaa-bbbb-cccc-0e9f8d7c6b5a"


def wecom_toml(api_base: str) -> str:
    """The config's [wecom] table for the fake corp's app ``ops`` at ``api_base``,
    with [images] allowing the loopback image server: the head of a serve config."""
    return f"""
[wecom]
api_base = "{api_base}"
timeout = "3s"

[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "{SECRET}"

[images]
allow = ["127.0.0.1"]
timeout = "3s"
"""
