"""Silences in Alertmanager through its API v2 (0.25 and later).

Alertmanager clusters replicate silences between peers, so any peer will do:
they are tried in the configured order, the last one that answered first
(see ``alertbridge.silencers.api_v2``, which holds the API itself).
Alertmanager has no authentication of its own; a proxy in front may want
``bearer_token`` or ``basic_auth``.
"""

from __future__ import annotations

import base64

import httpx

from alertbridge.config import SilencerConfig
from alertbridge.silencers.api_v2 import ApiV2Silencer, parse_rfc3339, rfc3339

__all__ = ["AlertmanagerSilencer", "parse_rfc3339", "rfc3339"]


class AlertmanagerSilencer(ApiV2Silencer):
    """``Silencer`` for one ``[silencers.NAME]`` of ``kind = "alertmanager"``."""

    kind = "alertmanager"
    product = "Alertmanager"

    def __init__(self, name: str, config: SilencerConfig, http: httpx.AsyncClient) -> None:
        super().__init__(
            name,
            config.url,
            api_path="/api/v2",
            headers=_auth_headers(config),
            timeout=config.timeout.total_seconds(),
            http=http,
        )

    def silence_url(self, silence_id: str) -> str:
        return f"{self.shown_url}/#/silences/{silence_id}"


def _auth_headers(config: SilencerConfig) -> dict[str, str]:
    if config.bearer_token is not None:
        return {"Authorization": f"Bearer {config.bearer_token.get_secret_value()}"}
    if config.basic_auth is not None:
        pair = f"{config.basic_auth.username}:{config.basic_auth.password.get_secret_value()}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
    return {}
