"""Scenario 5, callback: verify + decrypt + parse of WeCom callbacks, operations per second.

What alertbridge does with every callback POST before it may act on it
(alertbridge/messengers/wecom/callback.py): check the timestamp skew, read the
XML envelope, verify ``msg_signature`` (SHA-1), AES-256-CBC decrypt and unpad,
check the CorpID, and read the decrypted message (``callback_xml``: expat,
DTDs refused). Measured in-process, single-threaded, pinned to the server
core, over 1,000 distinct signed requests (a text reply ``ack <n>``, as users
send) built by the independent test helper
``alertbridge.testing.wecom_callback``; the set is cycled for ``SECONDS``.

Beside it, in the same process and alternating with it round by round,
wechatpy's WeCom crypto (PyPI, the [test] extra) on the same requests:
``WeChatCrypto.decrypt_message`` (envelope parse, signature, AES, CorpID) and
``parse_message`` (the message into a typed object), which is the same job
(without the timestamp check alertbridge does on top). Tencent's reference
sample is not on PyPI and is not copied in; the ratio to wechatpy is what
the table shows, with the target the issue set against the reference (≥ 1×).
The rounds' min and median are reported; the ratio is of the medians.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from alertbridge.messengers.wecom.crypto import CallbackCrypto, check_timestamp
from alertbridge.messengers.wecom.inbound import TextMessage, parse_inbound
from alertbridge.testing.wecom_callback import CallbackClient
from bench.common import CORES, QUICK, ScenarioResult, log, median, pinned_self

TOKEN = "benchCallbackToken123"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP_ID = "ww0000fakecorp"
AGENT_ID = 1000002
REQUESTS = 1000
SECONDS = 1.0 if QUICK else 3.0
ROUNDS = 3
MAX_SKEW = 300
TARGET_RATIO = 1.0


@dataclass(frozen=True, slots=True)
class SignedCallback:
    signature: str
    timestamp: str
    nonce: str
    body: bytes


def build_requests(count: int) -> list[SignedCallback]:
    """``count`` distinct callbacks exactly as WeCom would POST them."""
    client = CallbackClient("http://unused", "/wecom/callback/ops", TOKEN, AES_KEY, CORP_ID, AGENT_ID)
    requests: list[SignedCallback] = []
    try:
        for i in range(count):
            request = client.build_text(f"user{i % 50:02d}", f"ack {i + 1}")
            params = request.url.params
            requests.append(
                SignedCallback(params["msg_signature"], params["timestamp"], params["nonce"], request.content)
            )
    finally:
        client.close()
    return requests


def alertbridge_open() -> Callable[[SignedCallback], None]:
    """What alertbridge runs on a callback POST before acting on it."""
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)

    def one(r: SignedCallback) -> None:
        check_timestamp(r.timestamp, time.time(), MAX_SKEW)
        message = parse_inbound(crypto.open_message(r.signature, r.timestamp, r.nonce, r.body))
        if not isinstance(message, TextMessage):
            raise AssertionError(f"unexpected message {message!r}")

    return one


def wechatpy_open() -> Callable[[SignedCallback], None]:
    """The same job done by wechatpy (imported here: a [test] extra, not a dependency)."""
    from wechatpy.enterprise import parse_message  # type: ignore[import-untyped]
    from wechatpy.enterprise.crypto import WeChatCrypto  # type: ignore[import-untyped]

    crypto = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)

    def one(r: SignedCallback) -> None:
        message = parse_message(crypto.decrypt_message(r.body, r.signature, r.timestamp, r.nonce))
        if message.type != "text":
            raise AssertionError(f"unexpected message {message!r}")

    return one


def ops_per_second(one: Callable[[SignedCallback], None], requests: list[SignedCallback]) -> float:
    """Cycle ``requests`` through ``one`` for ``SECONDS``; operations per second."""
    done = 0
    start = time.perf_counter()
    deadline = start + SECONDS
    while time.perf_counter() < deadline:
        for r in requests:
            one(r)
        done += len(requests)
    return done / (time.perf_counter() - start)


def run() -> ScenarioResult:
    result = ScenarioResult("callback")
    requests = build_requests(REQUESTS)
    sides = {"alertbridge": alertbridge_open(), "wechatpy": wechatpy_open()}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    with pinned_self(CORES.server):
        for round_no in range(1, ROUNDS + 1):
            # Alternate which side goes first, so neither always runs on a warmer cache.
            order = list(sides) if round_no % 2 else list(reversed(sides))
            for name in order:
                rates[name].append(ops_per_second(sides[name], requests))
            log(
                f"callback round {round_no}/{ROUNDS}: "
                + ", ".join(f"{name} {rates[name][-1]:,.0f} ops/s" for name in sides)
            )
    ours, theirs = median(rates["alertbridge"]), median(rates["wechatpy"])
    ratio = ours / theirs if theirs else 0.0
    result.add(
        "callback verify + decrypt + parse (1 core, in-process), min / median",
        f"{min(rates['alertbridge']):,.0f} / {ours:,.0f} ops/s",
    )
    result.add(
        "callback ops/s alertbridge / wechatpy (same process, alternating)",
        f"{ours:,.0f} / {theirs:,.0f} = {ratio:.2f}× (wechatpy min {min(rates['wechatpy']):,.0f})",
        f"≥ {TARGET_RATIO:.1f}×",
        ratio >= TARGET_RATIO,
    )
    result.raw = {
        "rounds": ROUNDS,
        "seconds_per_round": SECONDS,
        "ops_per_second": rates,
        "ratio": ratio,
    }
    return result
