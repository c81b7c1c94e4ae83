"""Silences in Alertmanager through its API v2 (0.25 and later).

Alertmanager clusters replicate silences between peers, so any peer will do:
they are tried in the configured order, the last one that answered first.
Only "nobody answered" moves on to the next peer — a 4xx would be the same
everywhere, and repeating a refused request cannot help.

Every failure becomes a ``SilencerError`` whose text is shown to the WeCom
user who asked: it names the Alertmanager (without credentials) and, when
Alertmanager refused, its one-line reason.
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from alertbridge.config import SilencerConfig
from alertbridge.silencers import (
    Matcher,
    Silence,
    SilenceNotFoundError,
    SilenceRequest,
    SilencerError,
    ensure_selective,
)

log = logging.getLogger(__name__)

# A proxy in front of a dead Alertmanager answers with these: that peer is
# as good as unreachable, another one may work.
_GATEWAY_ERRORS = frozenset({502, 503, 504})
# 0.25 answers DELETE of an unknown silence with 500 and this body (0.26+: 404).
_NOT_FOUND_TEXT = "silence not found"
_MAX_REASON = 300
_FRACTION = re.compile(r"\.(\d+)")

T = TypeVar("T")


class AlertmanagerSilencer:
    """``Silencer`` for one ``[silencers.NAME]`` of ``kind = "alertmanager"``."""

    kind = "alertmanager"

    def __init__(self, name: str, config: SilencerConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self._urls = list(config.url)
        self._shown = [_without_userinfo(url) for url in self._urls]
        # As httpx spells request URLs, to tell which peer answered.
        self._prefixes = [str(httpx.URL(url + "/")) for url in self._urls]
        self._timeout = config.timeout.total_seconds()
        self._headers = _auth_headers(config)
        # Index into _urls of the peer that answered last; tried first.
        self._preferred = 0
        self._http = http

    async def create(self, request: SilenceRequest) -> str:
        ensure_selective(request.matchers)
        response = await self._request("POST", "/api/v2/silences", "silence not created", body=_body(request))
        self._raise_for_status(response, "silence not created")
        return self._silence_id(response)

    async def update(self, silence_id: str, request: SilenceRequest) -> str:
        """Returns the id Alertmanager answers with: the same one when only
        times or comment changed, a new one when the matchers did (it then
        expires the old silence) or the old one had expired."""
        ensure_selective(request.matchers)
        body = {"id": silence_id, **_body(request)}
        response = await self._request("POST", "/api/v2/silences", "silence not changed", body=body)
        if response.status_code == 404:
            raise SilenceNotFoundError(f"silence {silence_id} not found at {self._shown_url(response)}")
        self._raise_for_status(response, "silence not changed")
        return self._silence_id(response)

    async def expire(self, silence_id: str) -> bool:
        path = f"/api/v2/silence/{quote(silence_id, safe='')}"
        response = await self._request("DELETE", path, "silence not expired")
        if response.status_code == 404 or (
            response.status_code == 500 and _NOT_FOUND_TEXT in response.text.lower()
        ):
            return False
        self._raise_for_status(response, "silence not expired")
        return True

    async def get(self, silence_id: str) -> Silence | None:
        path = f"/api/v2/silence/{quote(silence_id, safe='')}"
        response = await self._request("GET", path, "cannot read the silence")
        if response.status_code == 404:
            return None
        self._raise_for_status(response, "cannot read the silence")
        return self._parse(response, _silence)

    async def list(self) -> list[Silence]:
        """Every silence Alertmanager still knows, expired ones included."""
        response = await self._request("GET", "/api/v2/silences", "cannot list silences")
        self._raise_for_status(response, "cannot list silences")
        return self._parse(response, lambda data: [_silence(item) for item in data])

    async def firing_alerts(
        self, matchers: Sequence[Matcher], *, silenced: bool = True, inhibited: bool = True
    ) -> builtins.list[dict[str, Any]]:
        """Alertmanager's active alerts selected by ``matchers``, as it returns
        them (``labels``, ``status.state``, ``status.silencedBy`` …): what a
        silence with these matchers covers right now."""
        params = httpx.QueryParams(
            [
                *(("filter", _filter_text(m)) for m in matchers),
                ("active", "true"),
                ("silenced", _bool(silenced)),
                ("inhibited", _bool(inhibited)),
                ("unprocessed", "true"),
            ]
        )
        response = await self._request("GET", "/api/v2/alerts", "cannot list alerts", params=params)
        self._raise_for_status(response, "cannot list alerts")
        return self._parse(response, _alert_list)

    def silence_url(self, silence_id: str) -> str:
        return f"{self._shown[0]}/#/silences/{silence_id}"

    async def _request(
        self,
        method: str,
        path: str,
        consequence: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: httpx.QueryParams | None = None,
    ) -> httpx.Response:
        """The first answer from a peer, starting with the one that answered
        last. Raises ``SilencerError(unreachable=True)`` when none does."""
        count = len(self._urls)
        tried: list[str] = []
        problems: list[str] = []
        for index in ((self._preferred + i) % count for i in range(count)):
            try:
                response = await self._http.request(
                    method,
                    self._urls[index] + path,
                    json=body,
                    params=params,
                    headers=self._headers,
                    timeout=self._timeout,
                )
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                problem = _transport_problem(exc)
            else:
                if response.status_code not in _GATEWAY_ERRORS:
                    self._preferred = index
                    return response
                problem = f"HTTP {response.status_code}"
            log.warning("silencer %s: Alertmanager at %s: %s", self.name, self._shown[index], problem)
            tried.append(self._shown[index])
            if problem not in problems:
                problems.append(problem)
        raise SilencerError(
            f"Alertmanager at {', '.join(tried)} unreachable ({', '.join(problems)}), {consequence}",
            unreachable=True,
        )

    def _raise_for_status(self, response: httpx.Response, consequence: str) -> None:
        status = response.status_code
        if status < 300:
            return
        where = self._shown_url(response)
        reason = _reason(response)
        if status in (401, 403):
            raise SilencerError(
                f"Alertmanager at {where} refused alertbridge's credentials (HTTP {status}), {consequence}"
            )
        detail = f": {reason}" if reason else f" (HTTP {status})"
        if 400 <= status < 500:
            raise SilencerError(f"Alertmanager at {where} refused, {consequence}{detail}")
        raise SilencerError(f"Alertmanager at {where} failed with HTTP {status}, {consequence}{detail}")

    def _silence_id(self, response: httpx.Response) -> str:
        return self._parse(response, lambda data: _str(data["silenceID"]))

    def _parse(self, response: httpx.Response, convert: Callable[[Any], T]) -> T:
        """``convert(json)``; a body of another shape is Alertmanager's (or a
        proxy's) fault and reported as such, not as a crash."""
        try:
            return convert(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("silencer %s: unexpected answer from %s: %r", self.name, response.request.url, exc)
            raise SilencerError(
                f"Alertmanager at {self._shown_url(response)} answered with an unexpected body"
            ) from None

    def _shown_url(self, response: httpx.Response) -> str:
        """The configured URL (credentials removed) the response came from."""
        url = str(response.request.url)
        for prefix, shown in zip(self._prefixes, self._shown, strict=True):
            if url.startswith(prefix):
                return shown
        return _without_userinfo(str(response.request.url.copy_with(path="", query=None)))


def _auth_headers(config: SilencerConfig) -> dict[str, str]:
    if config.bearer_token is not None:
        return {"Authorization": f"Bearer {config.bearer_token.get_secret_value()}"}
    if config.basic_auth is not None:
        pair = f"{config.basic_auth.username}:{config.basic_auth.password.get_secret_value()}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
    return {}


def _without_userinfo(url: str) -> str:
    """``url`` fit to show: ``http://user:pw@host`` loses ``user:pw@``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _body(request: SilenceRequest) -> dict[str, Any]:
    return {
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
            for m in request.matchers
        ],
        "startsAt": rfc3339(request.starts_at),
        "endsAt": rfc3339(request.ends_at),
        "createdBy": request.created_by,
        "comment": request.comment,
    }


def rfc3339(moment: datetime) -> str:
    """UTC with milliseconds and ``Z``, as Alertmanager writes times itself.

    Raises:
        ValueError: ``moment`` is naive; which zone it meant is unknowable.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: silences need an aware time")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_rfc3339(text: str) -> datetime:
    """Alertmanager's times (``…T12:09:52.274Z``), any fraction length."""
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.replace("Z", "+00:00"), count=1)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without zone: {text!r}")
    return moment.astimezone(UTC)


def _silence(data: Any) -> Silence:
    return Silence(
        id=_str(data["id"]),
        matchers=tuple(_matcher(m) for m in data["matchers"]),
        starts_at=parse_rfc3339(_str(data["startsAt"])),
        ends_at=parse_rfc3339(_str(data["endsAt"])),
        created_by=_str(data.get("createdBy", "")),
        comment=_str(data.get("comment", "")),
        state=_str(data["status"]["state"]),
    )


def _matcher(data: Any) -> Matcher:
    return Matcher(
        name=_str(data["name"]),
        value=_str(data["value"]),
        is_regex=bool(data.get("isRegex", False)),
        is_equal=bool(data.get("isEqual", True)),
    )


def _alert_list(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise TypeError("expected a list of alerts")
    return data


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _filter_text(matcher: Matcher) -> str:
    r"""The matcher in the text syntax ``filter=`` takes, value quoted and
    escaped the way Alertmanager's parser unescapes it (``\\``, ``\"``, ``\n``)."""
    op = ("=~" if matcher.is_regex else "=") if matcher.is_equal else ("!~" if matcher.is_regex else "!=")
    value = matcher.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{matcher.name}{op}"{value}"'


def _reason(response: httpx.Response) -> str:
    """Alertmanager's explanation on one line: a JSON string (its own
    errors), the ``message`` of a JSON object (request validation) or text."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        data = data["message"]
    if not isinstance(data, str):
        data = text
    line = next((line.strip() for line in data.splitlines() if line.strip()), "")
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def _transport_problem(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "connection broken"
    return type(exc).__name__
