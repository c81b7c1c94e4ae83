"""One HTTP exchange with the WeCom API, reduced to an errcode answer.

Credentials travel in query strings (``corpsecret``, ``access_token``,
``key``), so this module never logs a URL, never formats an httpx exception
(whose text and ``request`` carry the URL) and scrubs the credentials in play
out of anything WeCom echoes back. Errors are those of
``alertbridge.messengers.wecom.errors``; each one is counted in ``metrics``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import httpx

from alertbridge.messengers.wecom.errcodes import ErrCode, errcode_name
from alertbridge.messengers.wecom.errors import WeComHTTPError, WeComTransportError
from alertbridge.metrics import Metrics

_REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class Answer:
    """WeCom's JSON answer: its errcode, its errmsg (credentials scrubbed) and the whole object."""

    errcode: int
    errmsg: str
    data: Mapping[str, object]


class WeComTransport:
    """Requests to ``api_base`` over the process's shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, api_base: str, metrics: Metrics) -> None:
        self._http = http
        self._api_base = api_base.rstrip("/")
        self._metrics = metrics

    async def post(
        self,
        endpoint: str,
        params: Mapping[str, str],
        body: Mapping[str, object],
        *,
        secrets: Iterable[str],
    ) -> Answer:
        """POST ``body`` as JSON; ``secrets`` are the credentials in ``params``, scrubbed from errors."""
        # WeCom rejects \uXXXX escapes (errcode 40033): send real UTF-8.
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return await self.request("POST", endpoint, params, content, secrets=secrets)

    async def request(
        self,
        method: str,
        endpoint: str,
        params: Mapping[str, str],
        content: bytes | None,
        *,
        secrets: Iterable[str],
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> Answer:
        """One HTTP exchange, reduced to an errcode answer.

        ``content`` is a JSON body; ``files`` instead makes a multipart/form-data
        body (httpx sets its Content-Type with the boundary).

        A transport failure becomes our own error, raised *after* the except
        block: the httpx exception's ``request`` carries the URL with the
        credentials, and raising inside the block (even ``from None``) would
        still attach it as ``__context__`` for any error reporter to find.
        """
        try:
            answer = await self._exchange(method, endpoint, params, content, secrets=secrets, files=files)
        except (WeComTransportError, WeComHTTPError) as exc:
            self._metrics.wecom_errors.labels(exc.reason).inc()
            raise
        if answer.errcode != ErrCode.OK:
            self._metrics.wecom_errors.labels(errcode_name(answer.errcode)).inc()
        return answer

    async def _exchange(
        self,
        method: str,
        endpoint: str,
        params: Mapping[str, str],
        content: bytes | None,
        *,
        secrets: Iterable[str],
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> Answer:
        secrets = tuple(s for s in secrets if s)
        headers = {"Content-Type": "application/json; charset=utf-8"} if content is not None else None
        failure: WeComTransportError | None = None
        try:
            response = await self._http.request(
                method,
                self._api_base + endpoint,
                params=params,
                content=content,
                headers=headers,
                files=files,
            )
        except httpx.TimeoutException as exc:
            failure = WeComTransportError(endpoint, _describe(exc, secrets), reason="timeout")
        except httpx.HTTPError as exc:
            failure = WeComTransportError(endpoint, _describe(exc, secrets), reason="connection_error")
        if failure is not None:
            raise failure
        if response.status_code >= 500:
            raise WeComTransportError(endpoint, f"HTTP {response.status_code}", reason="server_error")
        if response.status_code == 429:
            raise WeComTransportError(endpoint, "HTTP 429", reason="rate_limited", min_delay=60.0)
        if response.status_code != 200:
            raise WeComHTTPError(endpoint, response.status_code)
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise WeComTransportError(endpoint, "answer is not a JSON object", reason="bad_response")
        errcode = data.get("errcode", 0)
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            raise WeComTransportError(endpoint, "answer has a non-integer errcode", reason="bad_response")
        return Answer(errcode, _scrub(str(data.get("errmsg", "")), secrets), data)


def _describe(exc: httpx.HTTPError, secrets: tuple[str, ...]) -> str:
    """A description of a transport failure without the URL or any credential."""
    text = str(exc)
    url = _request_url(exc)
    if url:
        text = text.replace(url, "<url>")
    text = _scrub(text, secrets)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _request_url(exc: httpx.HTTPError) -> str | None:
    try:
        return str(exc.request.url)
    except RuntimeError:  # httpx raises this when the exception carries no request
        return None


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace each secret, raw or percent-encoded as it would appear in a URL."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, _REDACTED)
    return text
