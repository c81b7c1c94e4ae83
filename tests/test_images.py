"""The image fetcher against a real loopback image server: SSRF guards, redirects,
size caps, types, timeouts, and address pinning (plain HTTP and HTTPS with SNI).

Loopback is blocked by default, so the tests that fetch allow it with
``allow=["127.0.0.1"]`` (or a narrower ``127.0.0.1:PORT``); the address rules
themselves are unit-tested on ``is_public_address`` and ``AllowList``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from alertbridge.addresses import AllowList, is_public_address
from alertbridge.config import ImagesConfig
from alertbridge.images import (
    ImageError,
    ImageFetcher,
    Resolver,
    new_image_http_client,
)
from tests.harness import require_binary
from tests.image_server import JPEG, PNG, ImageServer, image_app, make_png


def config(**changes: object) -> ImagesConfig:
    values: dict[str, object] = {"allow": ["127.0.0.1"], "timeout": timedelta(seconds=3), "max_redirects": 3}
    values.update(changes)
    return ImagesConfig.model_validate(values)


def static_resolver(table: dict[str, Sequence[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    return resolve


async def fetch(url: str, cfg: ImagesConfig | None = None, *, resolve: Resolver | None = None) -> bytes:
    cfg = cfg or config()
    async with new_image_http_client(cfg) as http:
        fetcher = ImageFetcher(cfg, http) if resolve is None else ImageFetcher(cfg, http, resolve=resolve)
        return (await fetcher.fetch(url)).data


async def reason_of(url: str, cfg: ImagesConfig | None = None, *, resolve: Resolver | None = None) -> str:
    with pytest.raises(ImageError) as caught:
        await fetch(url, cfg, resolve=resolve)
    return caught.value.reason


# ---- success -------------------------------------------------------------------


async def test_fetches_a_png(images: ImageServer) -> None:
    cfg = config()
    async with new_image_http_client(cfg) as http:
        image = await ImageFetcher(cfg, http).fetch(f"{images.base_url}/png")
    assert image.data == PNG
    assert image.content_type == "image/png" and image.extension == "png"
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()
    assert image.size == len(PNG)


async def test_fetches_a_jpeg(images: ImageServer) -> None:
    cfg = config()
    async with new_image_http_client(cfg) as http:
        image = await ImageFetcher(cfg, http).fetch(f"{images.base_url}/jpeg")
    assert (image.data, image.content_type, image.extension) == (JPEG, "image/jpeg", "jpg")


async def test_content_type_parameters_are_ignored(images: ImageServer) -> None:
    assert await fetch(f"{images.base_url}/other.png") == make_png(3, 1)


async def test_follows_redirects_up_to_the_limit(images: ImageServer) -> None:
    # /redirect/N answers N + 1 redirects before the image.
    assert await fetch(f"{images.base_url}/redirect/2", config(max_redirects=3)) == PNG
    assert images.paths == ["/redirect/2", "/redirect/1", "/redirect/0", "/png"]


async def test_relative_and_absolute_redirects(images: ImageServer) -> None:
    assert await fetch(f"{images.base_url}/to?url=/jpeg") == JPEG
    assert await fetch(f"{images.base_url}/to?url={images.base_url}/png") == PNG


# ---- the address rules ----------------------------------------------------------

BLOCKED = [
    "127.0.0.1",
    "127.255.0.9",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",  # deprecated site-local
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1",  # local-use NAT64
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:81c::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_allow_list_entries() -> None:
    allow = AllowList(
        ["Grafana.Internal.", "10.0.0.0/8", "192.168.1.5", "img.local:3000", "[fd00::5]:8443", "::1"]
    )
    assert allow.covers_host("grafana.internal", 80) and allow.covers_host("GRAFANA.internal.", 3000)
    assert allow.covers_host("img.local", 3000) and not allow.covers_host("img.local", 3001)
    assert not allow.covers_host("other.internal", 80)
    assert allow.covers_address(ipaddress.ip_address("10.9.8.7"), 1)
    assert allow.covers_address(ipaddress.ip_address("::ffff:10.9.8.7"), 1)  # mapped, judged as IPv4
    assert allow.covers_address(ipaddress.ip_address("192.168.1.5"), 443)
    assert not allow.covers_address(ipaddress.ip_address("192.168.1.6"), 443)
    assert allow.covers_address(ipaddress.ip_address("fd00::5"), 8443)
    assert not allow.covers_address(ipaddress.ip_address("fd00::5"), 443)
    assert allow.covers_address(ipaddress.ip_address("::1"), 80)
    assert allow.covers_host("fd00:0::5", 8443)  # an IP literal host, spelled differently


@pytest.mark.parametrize(
    "entry",
    ["", "http://grafana", "10.0.0.0/33", "host:port", "host:0", "host:70000", "a:b:c", "[::1]", "a b"],
)
def test_allow_list_rejects_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList([entry])


async def test_loopback_is_blocked_without_allow(images: ImageServer) -> None:
    assert await reason_of(f"{images.base_url}/png", config(allow=[])) == "blocked_address"
    assert images.paths == []  # refused before connecting


async def test_host_and_port_entry_allows_only_that_port(images: ImageServer) -> None:
    assert await fetch(f"{images.base_url}/png", config(allow=[f"127.0.0.1:{images.port}"])) == PNG
    other = config(allow=[f"127.0.0.1:{images.port + 1}"])
    assert await reason_of(f"{images.base_url}/png", other) == "blocked_address"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/render.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://[fe80::1]/x.png",
        "http://0.0.0.0/x.png",
        "https://192.168.0.10/x.png",
    ],
)
async def test_literal_private_addresses_are_blocked(url: str) -> None:
    assert await reason_of(url, config(allow=[])) == "blocked_address"


@pytest.mark.parametrize(
    "host", ["localhost", "LocalHost", "2130706433", "0x7f000001", "127.1", "[0:0:0:0:0:0:0:1]"]
)
async def test_other_spellings_of_loopback_are_blocked(images: ImageServer, host: str) -> None:
    """Whatever form the system resolver turns into 127.0.0.1 or ::1, that address is what is checked."""
    assert await reason_of(f"http://{host}:{images.port}/png", config(allow=[])) == "blocked_address"
    assert images.paths == []


async def test_octal_ipv4_is_not_a_url() -> None:
    assert await reason_of("http://0177.0.0.1/png", config(allow=[])) == "bad_url"


async def test_names_resolving_to_private_addresses_are_blocked() -> None:
    resolve = static_resolver({"internal.test": ["10.0.0.7"], "mixed.test": ["93.184.216.34", "10.0.0.7"]})
    assert (
        await reason_of("http://internal.test/x.png", config(allow=[]), resolve=resolve) == "blocked_address"
    )
    # One private answer among public ones is enough: the client could pick it.
    assert await reason_of("http://mixed.test/x.png", config(allow=[]), resolve=resolve) == "blocked_address"


async def test_connects_to_the_checked_address_with_the_original_host(images: ImageServer) -> None:
    """The name is resolved once, here; the request goes to that IP with Host: name.

    ``grafana.test`` does not exist in DNS: fetching it only works if the
    fetcher connects to the address it checked instead of resolving again.
    """
    calls: list[str] = []
    table = static_resolver({"grafana.test": ["127.0.0.1"]})

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return await table(host, port)

    url = f"http://grafana.test:{images.port}/png"
    assert await fetch(url, config(allow=["grafana.test"]), resolve=resolve) == PNG
    assert images.hosts == [f"grafana.test:{images.port}"]
    assert calls == ["grafana.test"]


async def test_a_trusted_name_is_allowed_whatever_it_resolves_to(images: ImageServer) -> None:
    resolve = static_resolver({"grafana.test": ["127.0.0.1"]})
    url = f"http://grafana.test:{images.port}/png"
    assert await fetch(url, config(allow=[f"grafana.test:{images.port}"]), resolve=resolve) == PNG
    assert await reason_of(url, config(allow=[]), resolve=resolve) == "blocked_address"


async def test_a_trusted_network_allows_names_resolving_into_it(images: ImageServer) -> None:
    resolve = static_resolver({"panel.test": ["127.0.0.1"]})
    assert await fetch(f"http://panel.test:{images.port}/png", config(allow=["127.0.0.0/8"]), resolve=resolve)


async def test_next_address_is_tried_when_one_refuses(images: ImageServer) -> None:
    closed = closed_port()
    resolve = static_resolver({"two.test": ["127.0.0.2", "127.0.0.1"]})
    # The server listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
    cfg = config(allow=["127.0.0.0/8"])
    assert await fetch(f"http://two.test:{images.port}/png", cfg, resolve=resolve) == PNG
    assert await reason_of(f"http://127.0.0.1:{closed}/png", cfg) == "http_error"


async def test_redirect_to_a_blocked_address_is_refused(images: ImageServer) -> None:
    only_server = config(allow=[f"127.0.0.1:{images.port}"])
    for target in (
        f"http://127.0.0.1:{images.port + 1}/png",  # loopback, another port
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/png",
        "http://10.0.0.1/png",
    ):
        images.reset()
        assert await reason_of(f"{images.base_url}/to?url={target}", only_server) == "blocked_address"
        assert images.paths == ["/to"]


async def test_redirect_to_a_name_resolving_privately_is_refused(images: ImageServer) -> None:
    resolve = static_resolver({"evil.test": ["10.1.1.1"]})
    cfg = config(allow=[f"127.0.0.1:{images.port}"])
    url = f"{images.base_url}/to?url=http://evil.test/x.png"
    assert await reason_of(url, cfg, resolve=resolve) == "blocked_address"


async def test_redirect_to_another_scheme_is_refused(images: ImageServer) -> None:
    assert await reason_of(f"{images.base_url}/to?url=file:///etc/passwd") == "bad_url"
    assert await reason_of(f"{images.base_url}/to?url=gopher://127.0.0.1:70/x") == "bad_url"


async def test_too_many_redirects(images: ImageServer) -> None:
    assert await reason_of(f"{images.base_url}/redirect/3", config(max_redirects=3)) == "too_many_redirects"
    assert images.paths == ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]
    assert await reason_of(f"{images.base_url}/redirect/0", config(max_redirects=0)) == "too_many_redirects"


async def test_redirect_without_location(images: ImageServer) -> None:
    assert await reason_of(f"{images.base_url}/redirect-nowhere") == "http_error"


# ---- what comes back --------------------------------------------------------------


async def test_too_large_by_content_length(images: ImageServer) -> None:
    assert await reason_of(f"{images.base_url}/declared-huge", config(max_bytes=1000)) == "too_large"


async def test_too_large_while_streaming_stops_early(images: ImageServer) -> None:
    # The server never stops sending: only an early abort ends this before the timeout.
    started = time.monotonic()
    assert await reason_of(f"{images.base_url}/streamed-huge", config(max_bytes=64 * 1024)) == "too_large"
    assert time.monotonic() - started < 2


async def test_exactly_max_bytes_is_fine(images: ImageServer) -> None:
    assert await fetch(f"{images.base_url}/png", config(max_bytes=len(PNG))) == PNG
    assert await reason_of(f"{images.base_url}/png", config(max_bytes=len(PNG) - 1)) == "too_large"


@pytest.mark.parametrize("path", ["/html", "/untyped"])
async def test_wrong_content_type(images: ImageServer, path: str) -> None:
    assert await reason_of(f"{images.base_url}{path}") == "bad_type"


@pytest.mark.parametrize("path", ["/garbage", "/png-as-jpeg"])
async def test_bytes_must_match_the_type(images: ImageServer, path: str) -> None:
    assert await reason_of(f"{images.base_url}{path}") == "bad_type"


@pytest.mark.parametrize("code", [404, 403, 500, 204])
async def test_http_errors(images: ImageServer, code: int) -> None:
    assert await reason_of(f"{images.base_url}/status/{code}") == "http_error"


async def test_unresolvable_host() -> None:
    resolve = static_resolver({})
    assert await reason_of("http://nowhere.test/x.png", resolve=resolve) == "http_error"


async def test_slow_answer_times_out(images: ImageServer) -> None:
    started = time.monotonic()
    assert (
        await reason_of(f"{images.base_url}/slow", config(timeout=timedelta(milliseconds=300))) == "timeout"
    )
    assert time.monotonic() - started < 2


async def test_trickling_body_hits_the_overall_deadline(images: ImageServer) -> None:
    # Each byte arrives well within any read timeout; the whole fetch does not.
    started = time.monotonic()
    assert (
        await reason_of(f"{images.base_url}/drip", config(timeout=timedelta(milliseconds=500))) == "timeout"
    )
    assert time.monotonic() - started < 2


async def test_slow_resolver_times_out() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["93.184.216.34"]

    cfg = config(timeout=timedelta(milliseconds=200))
    assert await reason_of("http://slow-dns.test/x.png", cfg, resolve=resolve) == "timeout"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x.png",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "/relative/path.png",
        "",
        "http:///no-host",
        "http://user:secret@127.0.0.1/x.png",
        "http://127.0.0.1:99999/x.png",
        "http://" + "a" * 5000 + ".test/",
    ],
)
async def test_bad_urls(url: str) -> None:
    assert await reason_of(url) == "bad_url"


async def test_no_cookies_are_kept_or_sent(images: ImageServer) -> None:
    cfg = config()
    async with new_image_http_client(cfg) as http:
        fetcher = ImageFetcher(cfg, http)
        await fetcher.fetch(f"{images.base_url}/cookie.png")
        await fetcher.fetch(f"{images.base_url}/png")
        http.cookies.set("planted", "by-someone-else")
        await fetcher.fetch(f"{images.base_url}/png")
    assert images.cookies == ["", "", ""]


async def test_errors_name_the_host_never_the_url(images: ImageServer) -> None:
    url = f"{images.base_url}/status/403?X-Amz-Signature=s3cr3t-signature&token=abc123"
    with pytest.raises(ImageError) as caught:
        await fetch(url)
    assert "127.0.0.1" in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "abc123" not in str(caught.value)
    assert caught.value.__cause__ is None


# ---- HTTPS: pinned to the address, verified for the name ---------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA and a certificate for ``img.test`` signed by it."""
    require_binary("openssl")
    work = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=alertbridge test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=work,
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=img.test", cwd=work)
    (work / "leaf.ext").write_text(
        "subjectAltName=DNS:img.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        encoding="ascii",
    )
    _openssl(
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext",
        cwd=work,
    )  # fmt: skip
    return Certs(work / "ca.pem", work / "leaf.pem", work / "leaf.key")


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[ImageServer]:
    seen = ImageServer()
    server = uvicorn.Server(
        uvicorn.Config(
            image_app(seen),
            host="127.0.0.1",
            port=0,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(certs.cert),
            ssl_keyfile=str(certs.key),
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "TLS test server did not start"
        time.sleep(0.01)
    seen.port = int(server.servers[0].sockets[0].getsockname()[1])
    yield seen
    server.should_exit = True
    thread.join()


def tls_client(cfg: ImagesConfig, certs: Certs) -> httpx.AsyncClient:
    """Like ``new_image_http_client`` but trusting the test CA."""
    return httpx.AsyncClient(
        timeout=cfg.timeout.total_seconds(),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        verify=ssl.create_default_context(cafile=str(certs.ca)),
    )


async def test_https_is_pinned_and_verified_for_the_name(tls_server: ImageServer, certs: Certs) -> None:
    """``img.test`` resolves (only here) to 127.0.0.1: the fetch succeeds only if the
    connection goes to that address *and* TLS checks the certificate against ``img.test``."""
    tls_server.reset()
    cfg = config(allow=["img.test"])
    resolve = static_resolver({"img.test": ["127.0.0.1"]})
    async with tls_client(cfg, certs) as http:
        image = await ImageFetcher(cfg, http, resolve=resolve).fetch(
            f"https://img.test:{tls_server.port}/png"
        )
    assert image.data == PNG
    assert tls_server.hosts == [f"img.test:{tls_server.port}"]


async def test_https_certificate_for_another_name_is_refused(tls_server: ImageServer, certs: Certs) -> None:
    """Pinning must not weaken verification: the certificate is for img.test only."""
    tls_server.reset()
    cfg = config(allow=["other.test", "127.0.0.1"])
    resolve = static_resolver({"other.test": ["127.0.0.1"]})
    async with tls_client(cfg, certs) as http:
        fetcher = ImageFetcher(cfg, http, resolve=resolve)
        with pytest.raises(ImageError) as by_name:
            await fetcher.fetch(f"https://other.test:{tls_server.port}/png")
        with pytest.raises(ImageError) as by_ip:
            await fetcher.fetch(f"https://127.0.0.1:{tls_server.port}/png")
    assert by_name.value.reason == by_ip.value.reason == "http_error"
    assert tls_server.paths == []


async def test_https_redirect_hops_are_pinned_too(tls_server: ImageServer, certs: Certs) -> None:
    tls_server.reset()
    cfg = config(allow=["img.test"])
    resolve = static_resolver({"img.test": ["127.0.0.1"]})
    async with tls_client(cfg, certs) as http:
        image = await ImageFetcher(cfg, http, resolve=resolve).fetch(
            f"https://img.test:{tls_server.port}/redirect/2"
        )
    assert image.data == PNG
    assert tls_server.hosts == [f"img.test:{tls_server.port}"] * 4


def closed_port() -> int:
    """A loopback port with nothing listening (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
