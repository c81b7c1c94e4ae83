"""Scenario 5, callback: verify + decrypt + parse of WeCom callbacks, operations per second.

What alertbridge does with every callback POST before it may act on it
(alertbridge/messengers/wecom/callback.py): check the timestamp skew, parse the XML
envelope, verify ``msg_signature`` (SHA-1), AES-256-CBC decrypt and unpad,
check the CorpID, and parse the decrypted message XML (defusedxml). Measured
in-process, single-threaded, pinned to the server core, over 1,000 distinct
signed requests (a text reply ``ack <n>``, as users send) built by the
independent test helper ``alertbridge.testing.wecom_callback``; the set is
cycled for ``SECONDS``. Informational: the issue sets no target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from alertbridge.messengers.wecom.crypto import CallbackCrypto, check_timestamp
from alertbridge.messengers.wecom.inbound import TextMessage, parse_inbound
from alertbridge.testing.wecom_callback import CallbackClient
from bench.common import CORES, QUICK, ScenarioResult, log, pinned_self

TOKEN = "benchCallbackToken123"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP_ID = "ww0000fakecorp"
AGENT_ID = 1000002
REQUESTS = 1000
SECONDS = 1.0 if QUICK else 3.0
MAX_SKEW = 300


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


def run() -> ScenarioResult:
    result = ScenarioResult("callback")
    requests = build_requests(REQUESTS)
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP_ID)
    with pinned_self(CORES.server):
        done = 0
        start = time.perf_counter()
        deadline = start + SECONDS
        while time.perf_counter() < deadline:
            for r in requests:
                check_timestamp(r.timestamp, time.time(), MAX_SKEW)
                message = parse_inbound(crypto.open_message(r.signature, r.timestamp, r.nonce, r.body))
                if not isinstance(message, TextMessage):
                    raise AssertionError(f"unexpected message {message!r}")
            done += len(requests)
        elapsed = time.perf_counter() - start
    ops = done / elapsed
    log(f"callback: {done} verified+decrypted+parsed in {elapsed:.2f} s")
    result.add("callback verify + decrypt + parse (1 core, in-process)", f"{ops:,.0f} ops/s")
    result.raw = {"operations": done, "seconds": elapsed, "ops_per_second": ops}
    return result
