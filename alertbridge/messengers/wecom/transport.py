"""One HTTP exchange with the WeCom API, reduced to an errcode answer.

Credentials travel in query strings (``corpsecret``, ``access_token``,
``key``), so this module never logs a URL, never formats an httpx exception
(whose text and ``request`` carry the URL) and scrubs the credentials in play
out of anything WeCom echoes back. Errors are those of
``alertbridge.messengers.wecom.errors``; each one is counted in ``metrics``.
"""

from __future__ import annotations

import email.message
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


@dataclass(frozen=True, slots=True)
class Download:
    """A file WeCom served (``media/get``): its bytes and what its headers say."""

    data: bytes
    content_type: str
    filename: str  # from Content-Disposition; "" when it names none


# An errcode answer to a download is a small JSON object; more is not one.
_MAX_ERROR_ANSWER = 64 * 1024


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

    async def download(
        self, endpoint: str, params: Mapping[str, str], *, secrets: Iterable[str], max_bytes: int
    ) -> Answer | Download:
        """GET a file: WeCom answers its bytes, or a JSON errcode object (an ``Answer``).

        At most ``max_bytes`` are read: a larger file is a ``too_large``
        ``WeComTransportError`` (announced by Content-Length or found while
        streaming). Errors are raised as ``request`` raises them.
        """
        secrets = tuple(s for s in secrets if s)
        failure: WeComTransportError | None = None
        try:
            async with self._http.stream("GET", self._api_base + endpoint, params=params) as response:
                _check_status(endpoint, response.status_code)
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type in ("application/json", "text/plain"):
                    body = await _read_capped(response, endpoint, _MAX_ERROR_ANSWER)
                    answer = _answer_of(endpoint, body, secrets)
                    if answer.errcode != ErrCode.OK:
                        self._metrics.wecom_errors.labels(errcode_name(answer.errcode)).inc()
                    return answer
                data = await _read_capped(response, endpoint, max_bytes)
                return Download(
                    data, content_type, _filename(response.headers.get("content-disposition", ""))
                )
        except (WeComTransportError, WeComHTTPError) as exc:
            self._metrics.wecom_errors.labels(exc.reason).inc()
            raise
        except httpx.TimeoutException as exc:
            failure = WeComTransportError(endpoint, _describe(exc, secrets), reason="timeout")
        except httpx.HTTPError as exc:
            failure = WeComTransportError(endpoint, _describe(exc, secrets), reason="connection_error")
        self._metrics.wecom_errors.labels(failure.reason).inc()
        raise failure

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
        _check_status(endpoint, response.status_code)
        return _answer_of(endpoint, response.content, secrets)


def _check_status(endpoint: str, status: int) -> None:
    """Raise for an HTTP status other than 200 (WeCom answers errors as JSON with 200)."""
    if status >= 500:
        raise WeComTransportError(endpoint, f"HTTP {status}", reason="server_error")
    if status == 429:
        raise WeComTransportError(endpoint, "HTTP 429", reason="rate_limited", min_delay=60.0)
    if status != 200:
        raise WeComHTTPError(endpoint, status)


def _answer_of(endpoint: str, content: bytes, secrets: tuple[str, ...]) -> Answer:
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise WeComTransportError(endpoint, "answer is not a JSON object", reason="bad_response")
    errcode = data.get("errcode", 0)
    if not isinstance(errcode, int) or isinstance(errcode, bool):
        raise WeComTransportError(endpoint, "answer has a non-integer errcode", reason="bad_response")
    return Answer(errcode, _scrub(str(data.get("errmsg", "")), secrets), data)


async def _read_capped(response: httpx.Response, endpoint: str, max_bytes: int) -> bytes:
    """The body, or ``too_large`` as soon as it exceeds ``max_bytes`` (nothing more is read)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise WeComTransportError(
            endpoint, f"{declared} bytes, over the {max_bytes} allowed", reason="too_large"
        )
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > max_bytes:
            raise WeComTransportError(
                endpoint, f"more than the {max_bytes} bytes allowed", reason="too_large"
            )
    return bytes(data)


def _filename(disposition: str) -> str:
    """The file name of a Content-Disposition header (RFC 6266 ``filename*`` preferred)."""
    message = email.message.Message()
    message["content-disposition"] = disposition
    return message.get_filename() or ""


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
