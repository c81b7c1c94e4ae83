"""Fetching alert images (Grafana panel screenshots) from URLs found in webhook payloads.

The URL is attacker-controlled as far as we know (anyone who can post a
webhook, or template an annotation, picks it), so ``ImageFetcher`` treats it
as hostile — server-side request forgery is the threat:

- only ``http``/``https`` URLs without userinfo;
- the host is resolved here and **every** address it resolves to must be
  public: loopback, private, shared (100.64/10), link-local, multicast,
  reserved and unspecified addresses are refused, for IPv4 and IPv6,
  including IPv4 embedded in IPv6 (``::ffff:10.0.0.1``, 6to4, NAT64), unless
  ``[images].allow`` covers the host (``grafana.internal``), the host and
  port (``grafana.internal:3000``, ``10.0.0.5:3000``) or the address
  (``10.0.0.0/8``, ``127.0.0.1``);
- the connection goes to the address that was checked (the URL is rewritten
  to the IP, with the original ``Host`` header and, for https, the original
  name as TLS SNI *and* certificate hostname), so a second DNS answer cannot
  swap in another address (DNS rebinding);
- redirects are followed by hand, at most ``max_redirects``, each hop
  checked like the first;
- the body is streamed with a cap (``max_bytes``; a larger Content-Length is
  refused before reading), the whole fetch — DNS, every hop, the body — has
  one deadline (``timeout``);
- the answer must say ``image/png`` or ``image/jpeg`` **and** start with that
  format's magic bytes — except for ``fetch_file`` (a receiver's
  ``attach_files``), which takes any type under the same rules otherwise.

Failures raise ``ImageError`` whose ``reason`` is a fixed word for metric
labels. Messages name the host, never the whole URL: image URLs can carry
signatures (S3 pre-signed links) or Grafana render keys.

The ``httpx.AsyncClient`` given to the fetcher should be its own
(``new_image_http_client``): no redirects, no proxies from the environment
(a proxy would resolve the name itself), no cookie jar, and no kept-alive
connections, so a TLS connection verified for one name is never reused for
another name that resolves to the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.cookiejar
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpx

from alertbridge import __version__
from alertbridge.addresses import AllowList, IPAddress, is_public_address, parse_ip
from alertbridge.deferred_http import DeferredPoolClient
from alertbridge.errors import AlertbridgeError
from alertbridge.metrics import Metrics

if TYPE_CHECKING:
    from alertbridge.config import ImagesConfig

log = logging.getLogger(__name__)

ImageErrorReason = Literal[
    "bad_url",  # not an http(s) URL, no host, userinfo, unparseable
    "blocked_address",  # the host is or resolves to a non-public address not in [images].allow
    "too_many_redirects",
    "too_large",  # Content-Length or the streamed body exceeds max_bytes (or a channel's own limit)
    "bad_type",  # not image/png or image/jpeg, or the bytes are not what the type says
    "timeout",  # the whole fetch took longer than [images].timeout
    "http_error",  # DNS failure, connection failure, TLS failure, a status other than 200
]

PNG = "image/png"
JPEG = "image/jpeg"
_MAGIC = {PNG: b"\x89PNG\r\n\x1a\n", JPEG: b"\xff\xd8\xff"}
_EXTENSIONS = {PNG: "png", JPEG: "jpg"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_URL_CHARS = 4096

Resolver = Callable[[str, int], Awaitable[list[str]]]


class ImageError(AlertbridgeError):
    """An image could not be fetched; ``reason`` is one of ``ImageErrorReason``."""

    def __init__(self, reason: ImageErrorReason, detail: str) -> None:
        self.reason: ImageErrorReason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class FetchedImage:
    data: bytes
    content_type: str  # PNG or JPEG, as the magic bytes confirmed
    sha256: str  # hex digest of ``data``

    @property
    def extension(self) -> str:
        """``png`` or ``jpg`` (``bin`` for a ``fetch_file`` of another type): for the file name WeCom shows."""
        return _EXTENSIONS.get(self.content_type, "bin")

    @property
    def size(self) -> int:
        return len(self.data)


async def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses, as the system resolver gives them (in its preference order)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def new_image_http_client(config: ImagesConfig) -> httpx.AsyncClient:
    """The client an ``ImageFetcher`` should use (see the module docs for why); its
    pool (and TLS context) is built on its first request (``alertbridge.deferred_http``)."""
    timeout = config.timeout.total_seconds()
    return DeferredPoolClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        headers={"User-Agent": f"alertbridge/{__version__}"},
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        # Keep no cookies: image servers get nothing back from each other.
        cookies=http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
    )


@dataclass(frozen=True, slots=True)
class _Redirect:
    location: str


class ImageFetcher:
    """Fetches one image URL at a time under the rules in the module docs.

    ``resolve`` replaces the system resolver (tests map made-up names to
    loopback with it). Raises ``ValueError`` for a bad ``config.allow`` entry.
    """

    def __init__(
        self, config: ImagesConfig, http: httpx.AsyncClient, *, resolve: Resolver = system_resolve
    ) -> None:
        self._allow = AllowList(config.allow)
        self._max_bytes = config.max_bytes
        self._timeout = config.timeout.total_seconds()
        self._max_redirects = config.max_redirects
        self._http = http
        self._resolve = resolve

    async def fetch(self, url: str) -> FetchedImage:
        """The image at ``url``.

        Raises:
            ImageError: see ``ImageErrorReason`` for the reasons.
        """
        return await self._within_deadline(url, typed=True)

    async def fetch_file(self, url: str) -> FetchedImage:
        """The file at ``url``, of any content type, under every other rule of ``fetch``.

        Raises:
            ImageError: see ``ImageErrorReason`` (never ``bad_type``).
        """
        return await self._within_deadline(url, typed=False)

    async def _within_deadline(self, url: str, *, typed: bool) -> FetchedImage:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                return await self._fetch(url, typed)
        raise ImageError("timeout", f"nothing from {_host_of(url)} within {self._timeout:g}s")

    async def _fetch(self, url: str, typed: bool) -> FetchedImage:
        current = url
        for _hop in range(self._max_redirects + 1):
            target = _parse_url(current)
            outcome = await self._get(target, typed)
            if isinstance(outcome, FetchedImage):
                return outcome
            current = str(target.join(outcome.location))
        raise ImageError("too_many_redirects", f"{_host_of(url)}: more than {self._max_redirects} redirects")

    async def _get(self, target: httpx.URL, typed: bool) -> FetchedImage | _Redirect:
        host = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        addresses = await self._vetted_addresses(host, port)
        headers = {
            "Host": target.netloc.decode("ascii"),
            "Accept": f"{PNG}, {JPEG}" if typed else "*/*",
            "Accept-Encoding": "identity",
            "Connection": "close",
        }
        # With the IP in the URL, TLS must still verify (and ask for) the name.
        extensions = {"sni_hostname": host} if target.scheme == "https" and parse_ip(host) is None else {}
        failure: ImageError | None = None
        for ip in addresses:
            try:
                pinned = target.copy_with(host=str(ip))
            except httpx.InvalidURL:  # e.g. a scoped IPv6 address (fe80::1%eth0)
                failure = ImageError("http_error", f"{host}: cannot connect to {ip}")
                continue
            request = self._http.build_request("GET", pinned, headers=headers, extensions=extensions)
            # Cookies are kept by address here, so they could cross hosts: send none.
            if "cookie" in request.headers:
                del request.headers["cookie"]
            try:
                response = await self._http.send(request, stream=True, auth=None)
            except httpx.TimeoutException:
                failure = ImageError("timeout", f"{host}: timed out")
                break
            except httpx.ConnectError as exc:
                # Try the next address; keep a description without the URL.
                failure = ImageError("http_error", f"{host}: cannot connect: {type(exc).__name__}")
                continue
            except httpx.HTTPError as exc:
                failure = ImageError("http_error", f"{host}: {type(exc).__name__}")
                break
            try:
                return await self._read(response, host, typed)
            finally:
                await response.aclose()
        assert failure is not None
        raise failure

    async def _vetted_addresses(self, host: str, port: int) -> list[IPAddress]:
        literal = parse_ip(host)
        if literal is not None:
            addresses = [literal]
        else:
            resolved: list[str] = []
            problem = ""
            try:
                resolved = await self._resolve(host, port)
            except (OSError, UnicodeError) as exc:
                problem = type(exc).__name__
            addresses = [ip for ip in map(parse_ip, resolved) if ip is not None]
            if not addresses:
                raise ImageError("http_error", f"{host}: cannot resolve {problem}".rstrip())
        if self._allow.covers_host(host, port):
            return addresses
        for ip in addresses:
            if not is_public_address(ip) and not self._allow.covers_address(ip, port):
                raise ImageError(
                    "blocked_address",
                    f"{host} resolves to {ip}, which is not a public address; "
                    "add the host or its network to [images].allow to trust it",
                )
        return addresses

    async def _read(self, response: httpx.Response, host: str, typed: bool) -> FetchedImage | _Redirect:
        status = response.status_code
        if status in _REDIRECTS:
            location = response.headers.get("location")
            if not location:
                raise ImageError("http_error", f"{host}: HTTP {status} without a Location")
            return _Redirect(location)
        if status != 200:
            raise ImageError("http_error", f"{host}: HTTP {status}")
        declared = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if typed and declared not in _MAGIC:
            raise ImageError("bad_type", f"{host}: content type {declared or 'missing'!r} is not PNG or JPEG")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self._max_bytes:
            raise ImageError("too_large", f"{host}: {length} bytes declared, limit {self._max_bytes}")
        body = await self._body(response, host)
        if typed and not body.startswith(_MAGIC[declared]):
            raise ImageError("bad_type", f"{host}: the bytes are not {declared}")
        return FetchedImage(body, declared or "application/octet-stream", hashlib.sha256(body).hexdigest())

    async def _body(self, response: httpx.Response, host: str) -> bytes:
        """The body, read until it exceeds ``max_bytes`` at most.

        Errors are raised outside the ``except`` blocks, so no httpx exception
        (whose request holds the URL) is chained to them.
        """
        data = bytearray()
        failure: ImageError | None = None
        try:
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > self._max_bytes:
                    failure = ImageError("too_large", f"{host}: more than {self._max_bytes} bytes")
                    break
        except httpx.TimeoutException:
            failure = ImageError("timeout", f"{host}: timed out reading the body")
        except httpx.HTTPError as exc:
            failure = ImageError("http_error", f"{host}: reading the body failed: {type(exc).__name__}")
        if failure is not None:
            raise failure
        return bytes(data)


def _parse_url(url: str) -> httpx.URL:
    if len(url) > _MAX_URL_CHARS:
        raise ImageError("bad_url", f"URL longer than {_MAX_URL_CHARS} characters")
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ImageError("bad_url", "not a valid URL") from None
    if target.scheme not in ("http", "https"):
        raise ImageError("bad_url", f"scheme {target.scheme!r} is not http or https")
    if not target.raw_host:
        raise ImageError("bad_url", "the URL has no host")
    if target.port is not None and not 0 < target.port < 65536:
        raise ImageError("bad_url", f"{target.host}: port {target.port} is out of range")
    if target.userinfo:
        raise ImageError("bad_url", f"{target.host}: URLs with credentials are not fetched")
    try:
        target.raw_host.decode("ascii")
    except UnicodeDecodeError:
        raise ImageError("bad_url", "the host is not ASCII after IDNA encoding") from None
    return target


def _host_of(url: str) -> str:
    """The host of ``url`` for messages (never the path or query, which may hold secrets)."""
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, ValueError, TypeError):
        return "?"


def record_image_failure(
    failures: Counter[str], metrics: Metrics, reason: str, *, channel: str, url: str, detail: str
) -> None:
    """Count and log an image that could not be posted (the message text went out without it).

    ``channel`` names the channel for the log (``app:ops``, ``robot``); the
    metric is labelled with its kind only. The log names the URL's host only;
    ``detail`` must already be free of credentials (the WeCom client's and
    ``ImageError``'s messages are).
    """
    failures[reason] += 1
    metrics.images.labels(channel.partition(":")[0], reason).inc()
    log.warning(
        "image_skipped channel=%s reason=%s host=%s: %s (the message was sent without the image)",
        channel,
        reason,
        _host_of(url),
        detail,
    )
