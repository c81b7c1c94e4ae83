"""Alertmanager's API v2 silences and alerts, wherever it is served.

Prometheus Alertmanager serves it under ``/api/v2``; Grafana's built-in
Alertmanager serves the same JSON under ``/api/alertmanager/grafana/api/v2``
(with a few differences in status codes: 202 on create, 404 on deleting an
unknown silence). ``ApiV2Silencer`` holds everything both speak; the
``AlertmanagerSilencer`` and ``GrafanaSilencer`` subclasses only say where,
how to authenticate, what to call themselves in messages and how to link to
a silence.

Several base URLs (HA peers, which replicate silences) are tried in the
configured order, the last one that answered first. Only "nobody answered"
moves on to the next one — a 4xx would be the same everywhere, and repeating
a refused request cannot help.

Every failure becomes a ``SilencerError`` whose text is shown to the WeCom
user who asked: it names the server (without credentials) and, when it
refused, its one-line reason.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from alertbridge.silencers import (
    Matcher,
    Silence,
    SilenceNotFoundError,
    SilenceRequest,
    SilencerError,
    SilencerFailure,
    ensure_selective,
)

log = logging.getLogger(__name__)

# A proxy in front of a dead server answers with these: that peer is as good
# as unreachable, another one may work.
_GATEWAY_ERRORS = frozenset({502, 503, 504})
# Alertmanager 0.25 answers DELETE of an unknown silence with 500 and the
# first text (0.26+ and Grafana: 404); servers built on Alertmanager's silence
# package from before expiring became idempotent (older Grafana) answer
# DELETE of an expired silence with 500 and the second.
_GONE_TEXTS = ("silence not found", "already expired")
_MAX_REASON = 300
_FRACTION = re.compile(r"\.(\d+)")

T = TypeVar("T")


class ApiV2Silencer:
    """The ``Silencer`` protocol over Alertmanager's API v2 at ``urls`` + ``api_path``.

    Subclasses set ``kind`` and ``product`` (the name shown in messages,
    "Alertmanager at http://… unreachable") and implement ``silence_url``.
    """

    kind: str
    product: ClassVar[str]
    # Keys of the create answer that may hold the new id, tried in order.
    id_keys: ClassVar[tuple[str, ...]] = ("silenceID",)

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        *,
        api_path: str,
        headers: Mapping[str, str],
        timeout: float,
        http: httpx.AsyncClient,
    ) -> None:
        if not urls:
            raise ValueError("at least one URL is needed")
        self.name = name
        self._urls = [url.rstrip("/") for url in urls]
        self._shown = [without_userinfo(url) for url in self._urls]
        # As httpx spells request URLs, to tell which peer answered.
        self._prefixes = [str(httpx.URL(url + "/")) for url in self._urls]
        self._api_path = "/" + api_path.strip("/")
        self._timeout = timeout
        self._headers = dict(headers)
        # Index into _urls of the peer that answered last; tried first.
        self._preferred = 0
        self._http = http

    async def create(self, request: SilenceRequest) -> str:
        ensure_selective(request.matchers)
        response = await self._request("POST", "/silences", "silence not created", body=silence_body(request))
        self._raise_for_status(response, "silence not created")
        return self._silence_id(response)

    async def update(self, silence_id: str, request: SilenceRequest) -> str:
        """Returns the id the server answers with: the same one when only
        times or comment changed, a new one when the matchers did (it then
        expires the old silence) or the old one had expired."""
        ensure_selective(request.matchers)
        body = {"id": silence_id, **silence_body(request)}
        response = await self._request("POST", "/silences", "silence not changed", body=body)
        if response.status_code == 404:
            raise SilenceNotFoundError(f"silence {silence_id} not found at {self._shown_url(response)}")
        self._raise_for_status(response, "silence not changed")
        return self._silence_id(response)

    async def expire(self, silence_id: str) -> bool:
        """False when the server says the silence was already gone: unknown
        to it, or (older Grafana) already expired. Alertmanager 0.25+ and
        current Grafana expire idempotently, so expiring twice gives True."""
        path = f"/silence/{quote(silence_id, safe='')}"
        response = await self._request("DELETE", path, "silence not expired")
        if response.status_code == 404 or (
            response.status_code == 500 and any(text in response.text.lower() for text in _GONE_TEXTS)
        ):
            return False
        self._raise_for_status(response, "silence not expired")
        return True

    async def get(self, silence_id: str) -> Silence | None:
        path = f"/silence/{quote(silence_id, safe='')}"
        response = await self._request("GET", path, "cannot read the silence")
        if response.status_code == 404:
            return None
        self._raise_for_status(response, "cannot read the silence")
        return self._parse(response, parse_silence)

    async def list(self) -> list[Silence]:
        """Every silence the server still knows, expired ones included."""
        response = await self._request("GET", "/silences", "cannot list silences")
        self._raise_for_status(response, "cannot list silences")
        return self._parse(response, lambda data: [parse_silence(item) for item in data])

    async def firing_alerts(
        self, matchers: Sequence[Matcher], *, silenced: bool = True, inhibited: bool = True
    ) -> builtins.list[dict[str, Any]]:
        """The active alerts selected by ``matchers``, as the server returns
        them (``labels``, ``status.state``, ``status.silencedBy`` …): what a
        silence with these matchers covers right now."""
        params = httpx.QueryParams(
            [
                *(("filter", filter_text(m)) for m in matchers),
                ("active", "true"),
                ("silenced", _bool(silenced)),
                ("inhibited", _bool(inhibited)),
                ("unprocessed", "true"),
            ]
        )
        response = await self._request("GET", "/alerts", "cannot list alerts", params=params)
        self._raise_for_status(response, "cannot list alerts")
        return self._parse(response, _alert_list)

    def silence_url(self, silence_id: str) -> str:
        raise NotImplementedError

    @property
    def shown_url(self) -> str:
        """The first configured URL, credentials removed: the one to link to."""
        return self._shown[0]

    def _credentials_hint(self, status: int) -> str:
        """Appended to "refused alertbridge's credentials (HTTP 401/403), …"."""
        return ""

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
                    self._urls[index] + self._api_path + path,
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
            log.warning("silencer %s: %s at %s: %s", self.name, self.product, self._shown[index], problem)
            tried.append(self._shown[index])
            if problem not in problems:
                problems.append(problem)
        raise SilencerError(
            f"{self.product} at {', '.join(tried)} unreachable ({', '.join(problems)}), {consequence}",
            unreachable=True,
            product=self.product,
        )

    def _raise_for_status(self, response: httpx.Response, consequence: str) -> None:
        status = response.status_code
        if status < 300:
            return
        where = self._shown_url(response)
        if status in (401, 403):
            # The body is not shown: a proxy might echo the request's headers.
            raise SilencerError(
                f"{self.product} at {where} refused alertbridge's credentials (HTTP {status}), "
                f"{consequence}{self._credentials_hint(status)}",
                kind=SilencerFailure.CREDENTIALS,
                product=self.product,
            )
        reason = _reason(response)
        detail = f": {reason}" if reason else f" (HTTP {status})"
        if 400 <= status < 500:
            raise SilencerError(
                f"{self.product} at {where} refused, {consequence}{detail}",
                kind=SilencerFailure.REFUSED,
                product=self.product,
            )
        raise SilencerError(
            f"{self.product} at {where} failed with HTTP {status}, {consequence}{detail}",
            kind=SilencerFailure.SERVER_ERROR,
            product=self.product,
        )

    def _silence_id(self, response: httpx.Response) -> str:
        def convert(data: Any) -> str:
            for key in self.id_keys:
                if key in data:
                    return _str(data[key])
            raise KeyError(self.id_keys[0])

        return self._parse(response, convert)

    def _parse(self, response: httpx.Response, convert: Callable[[Any], T]) -> T:
        """``convert(json)``; a body of another shape is the server's (or a
        proxy's) fault and reported as such, not as a crash."""
        try:
            return convert(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("silencer %s: unexpected answer from %s: %r", self.name, response.request.url, exc)
            raise SilencerError(
                f"{self.product} at {self._shown_url(response)} answered with an unexpected body",
                kind=SilencerFailure.BAD_ANSWER,
                product=self.product,
            ) from None

    def _shown_url(self, response: httpx.Response) -> str:
        """The configured URL (credentials removed) the response came from."""
        url = str(response.request.url)
        for prefix, shown in zip(self._prefixes, self._shown, strict=True):
            if url.startswith(prefix):
                return shown
        return without_userinfo(str(response.request.url.copy_with(path="", query=None)))


def without_userinfo(url: str) -> str:
    """``url`` fit to show: ``http://user:pw@host`` loses ``user:pw@``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def silence_body(request: SilenceRequest) -> dict[str, Any]:
    """The ``postableSilence`` JSON for ``request`` (without ``id``)."""
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


def parse_silence(data: Any) -> Silence:
    """A ``gettableSilence``; unknown fields (Grafana's ``metadata`` …) are ignored.

    Raises:
        KeyError, TypeError, ValueError: ``data`` is not a silence.
    """
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


def filter_text(matcher: Matcher) -> str:
    r"""The matcher in the text syntax ``filter=`` takes, value quoted and
    escaped the way Alertmanager's parser unescapes it (``\\``, ``\"``, ``\n``)."""
    op = ("=~" if matcher.is_regex else "=") if matcher.is_equal else ("!~" if matcher.is_regex else "!=")
    value = matcher.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{matcher.name}{op}"{value}"'


def _reason(response: httpx.Response) -> str:
    """The server's explanation on one line: a JSON string (Alertmanager's
    own errors), the ``message`` of a JSON object (request validation,
    Grafana's errors) or text."""
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
