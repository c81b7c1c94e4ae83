"""``check-config --online``: ask the messengers and the silencers whether the config works.

The offline check proves the file is well-formed; this one proves the
credentials are right before the first alert finds out. Nothing is sent to
anybody: each messenger brings its own checks (listed by
``alertbridge.messengers.registry.online_checks``); each silencer peer answers
``GET /api/v2/status`` (Alertmanager) or ``/api/health`` and, with the
token, its Alertmanager's status (Grafana).

Every check is one line, ``ok``/``FAIL``, naming the config key to fix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

import httpx

from alertbridge.config import Config, SilencerConfig
from alertbridge.silencers.alertmanager import _auth_headers
from alertbridge.silencers.api_v2 import without_userinfo

_GRAFANA_STATUS: Final = "/api/alertmanager/grafana/api/v2/status"


@dataclass(frozen=True, slots=True)
class Check:
    key: str  # the config key to fix when it fails
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':4}  {self.key}: {self.detail}"


MessengerChecks = Callable[[httpx.AsyncClient, Config], AsyncIterator[Check]]


async def run_online_checks(config: Config, out: TextIO, messengers: Sequence[MessengerChecks]) -> bool:
    """Run every check, print one line each to ``out``; True when all passed.

    ``messengers``: each messenger's checks (``alertbridge.messengers.registry.online_checks()``),
    run before the silencers'."""
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        print(check.line(), file=out, flush=True)

    async with httpx.AsyncClient(follow_redirects=False) as http:
        for messenger_checks in messengers:
            async for check in messenger_checks(http, config):
                report(check)
        for name, silencer in config.silencers.items():
            for url in silencer.url:
                report(await _check_silencer(http, name, silencer, url))
    return all(check.ok for check in checks)


async def _check_silencer(http: httpx.AsyncClient, name: str, silencer: SilencerConfig, url: str) -> Check:
    key = f"silencers.{name}.url"
    timeout = silencer.timeout.total_seconds()
    shown = without_userinfo(url)
    if silencer.kind == "alertmanager":
        problem = await _http_ok(http, f"{url}/api/v2/status", _auth_headers(silencer), timeout)
        return Check(key, problem is None, problem or f"Alertmanager at {shown} answers /api/v2/status")
    problem = await _http_ok(http, f"{url}/api/health", {}, timeout)
    if problem is not None:
        return Check(key, False, problem)
    token = silencer.token.get_secret_value() if silencer.token is not None else ""
    problem = await _http_ok(http, url + _GRAFANA_STATUS, {"Authorization": f"Bearer {token}"}, timeout)
    if problem is not None:
        return Check(f"silencers.{name}.token", False, problem)
    return Check(key, True, f"Grafana at {shown} is healthy and takes the token")


async def _http_ok(
    http: httpx.AsyncClient, url: str, headers: Mapping[str, str], timeout: float
) -> str | None:
    """None when ``url`` answers 200, else a one-line reason."""
    url_shown = without_userinfo(url)
    try:
        response = await http.get(url, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return f"{url_shown} timed out"
    except httpx.HTTPError as exc:
        return f"{url_shown} unreachable ({type(exc).__name__})"
    if response.status_code in (401, 403):
        return f"{url_shown} refused the credentials (HTTP {response.status_code})"
    if response.status_code != 200:
        return f"{url_shown} answered HTTP {response.status_code}"
    return None
