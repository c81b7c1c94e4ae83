"""Limits before authentication, on a real ``alertbridge serve`` and a raw socket client:
oversized heads, slow heads and bodies, and connections beyond the cap."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import AlertbridgeProcess, wait_until

LIMITS = 'max_header_bytes = 4096\nheader_timeout = "1s"\nbody_timeout = "1s"\nmax_connections = 4\n'


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertbridgeProcess]:
    process = AlertbridgeProcess(
        tmp_path_factory.mktemp("limits"), '[receivers.console]\nchannel = "console"\n'
    )
    text = process.config_path.read_text(encoding="utf-8")
    process.config_path.write_text(text.replace("[server]\n", "[server]\n" + LIMITS, 1), encoding="utf-8")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def connect(bridge: AlertbridgeProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the 10 s socket timeout)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_an_oversized_head_is_refused_with_431(bridge: AlertbridgeProcess) -> None:
    with connect(bridge) as sock:
        head = b"POST /alertmanager/console HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        # The server may close mid-upload: what matters is what it answered first.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    # A head within the limit is served as usual.
    assert (
        httpx.get(f"{bridge.base_url}/healthz", headers={"X-Pad": "a" * 3000}, timeout=10).status_code == 200
    )


def test_a_slow_head_is_dropped_after_header_timeout(bridge: AlertbridgeProcess) -> None:
    with connect(bridge) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /alertmanager/console HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        try:
            for n in range(100):  # slowloris: one more header line every 0.1 s, never the end
                sock.sendall(b"X-%d: y\r\n" % n)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert elapsed < 4, elapsed


def test_a_slow_body_is_dropped_after_body_timeout(bridge: AlertbridgeProcess) -> None:
    with connect(bridge) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /alertmanager/console HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert 0.8 < elapsed < 4, elapsed


def test_connections_beyond_the_cap_get_503_until_idle_ones_are_dropped(bridge: AlertbridgeProcess) -> None:
    idle = [connect(bridge) for _ in range(4)]
    try:
        time.sleep(0.1)
        assert httpx.get(f"{bridge.base_url}/healthz", timeout=10).status_code == 503
        # The idle ones never sent a head: header_timeout closes them and frees the slots.
        for sock in idle:
            assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
            sock.close()
        wait_until(
            lambda: httpx.get(f"{bridge.base_url}/healthz", timeout=10).status_code == 200, 5, "a free slot"
        )
    finally:
        for sock in idle:
            sock.close()
