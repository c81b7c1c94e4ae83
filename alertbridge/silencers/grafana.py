"""Silences in Grafana's built-in Alertmanager (Grafana-managed alerts).

Grafana serves Alertmanager's API v2 under
``/api/alertmanager/grafana/api/v2`` (docs/alertmanager-grafana.md §8), so
this is ``ApiV2Silencer`` pointed there, with a service-account token as
``Authorization: Bearer``. Grafana's differences are absorbed: create answers
202 with ``{"silenceID": …}`` (Grafana 8 era: ``{"message": …, "id": …}``),
DELETE of an unknown silence answers 404, errors are ``{"message": …}``.

The token needs the Editor role, or ``alert.instances:read`` plus
``alert.instances:create`` / ``alert.instances:write`` (``alert.silences:*``
only cover silences on one rule's ``__alert_rule_uid__``).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from alertbridge.config import SilencerConfig
from alertbridge.silencers.api_v2 import ApiV2Silencer

API_PATH = "/api/alertmanager/grafana/api/v2"


class GrafanaSilencer(ApiV2Silencer):
    """``Silencer`` for one ``[silencers.NAME]`` of ``kind = "grafana"``;
    ``url`` is Grafana's base URL (with its sub-path, if served under one)."""

    kind = "grafana"
    product = "Grafana"
    id_keys = ("silenceID", "id")

    def __init__(self, name: str, config: SilencerConfig, http: httpx.AsyncClient) -> None:
        """Raises:
        ValueError: ``config`` has no ``token`` (config validation requires one).
        """
        if config.token is None:
            raise ValueError(f"silencer {name}: a grafana silencer needs a service-account token")
        super().__init__(
            name,
            config.url,
            api_path=API_PATH,
            headers={"Authorization": f"Bearer {config.token.get_secret_value()}"},
            timeout=config.timeout.total_seconds(),
            http=http,
        )

    def silence_url(self, silence_id: str) -> str:
        return f"{self.shown_url}/alerting/silence/{quote(silence_id, safe='')}/edit?alertmanager=grafana"

    def _credentials_hint(self, status: int) -> str:
        if status == 403:
            return ": the service account needs the Editor role (or alert.instances permissions)"
        return ": check the service-account token"
