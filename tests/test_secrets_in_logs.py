"""No credential ever reaches alertbridge's output, even on its error paths.

Two real ``alertbridge serve`` runs are grepped, stderr (logs) and stdout:

- the WeCom fault run of tests/fault_run.py (shared with tests/test_faults.py,
  it runs once per session): retries, timeouts, 502s, 42001 replays and 45009s, with the corp
  secret, robot keys and a stream of access tokens in every request URL;
- a fuzz run: the hostile corpus of tests/corpus_replay.py plus a few
  hundred hypothesis cases against the webhook endpoints (with bearer auth)
  and the WeCom callback, a validly signed URL check and refused card taps
  whose replies go to a fake WeCom that fails the first attempts.

Every configured secret (``Config.secrets()``: corp secret, callback token,
EncodingAESKey, robot keys, webhook bearer token) and every access token the
fake issued must be absent, raw or percent-encoded as in a URL. The test is
only meaningful if the errors happened and the secrets were used, so it
asserts both first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertbridge.config import load_config
from alertbridge.testing.fake_wecom import GETTOKEN, MESSAGE_SEND, WEBHOOK_SEND, FakeApp, FakeWeCom, Fault
from tests.corpus_replay import (
    AGENT_ID,
    CORP_ID,
    CORP_SECRET,
    Replayer,
    corpus_config,
    corpus_env,
    load_corpus,
)
from tests.fault_run import FaultRun
from tests.fuzz_inputs import FIRING, GRAFANA, content_types, json_values, mutate
from tests.harness import AlertbridgeProcess, events_in, wait_until

ROBOT_KEY = "secrets-robot-key-Jd84Lx0q"
FUZZ_EXAMPLES = 150  # per strategy; three strategies

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases every run: a leak found once is found again
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True, slots=True)
class FuzzRun:
    stderr: str
    stdout: str
    secrets: list[str]
    issued_tokens: list[str]
    statuses: dict[int, int]  # answers to the corpus and the forged callbacks, by status
    checked: int  # hypothesis webhook cases that passed Target.check
    echo: str  # what the signed URL check answered
    replies: int  # replies WeCom delivered
    robot_messages: int


def _fuzz(replayer: Replayer) -> tuple[dict[int, int], int]:
    """The corpus and three hypothesis strategies: the status counts of the
    corpus and callback answers, and how many webhook cases ``Target.check`` passed."""
    statuses: dict[int, int] = {}
    checked = [0]

    def count(response: httpx.Response | None) -> None:
        # None: a too-large body refused by cutting the upload (see Replayer.send).
        status = 413 if response is None else response.status_code
        statuses[status] = statuses.get(status, 0) + 1

    for entry in load_corpus():
        for target in entry.targets:
            count(replayer.send(entry, target))

    server = replayer.target

    @FUZZ
    @given(body=st.binary(max_size=2048), content_type=content_types, grafana=st.booleans())
    def random_bytes(body: bytes, content_type: str, grafana: bool) -> None:
        path = "/grafana/sink" if grafana else "/alertmanager/sink"
        server.check(path, body, content_type)  # no 5xx, a one-line reason, nothing stored
        checked[0] += 1

    @FUZZ
    @given(
        path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=4),
        replacement=json_values,
        grafana=st.booleans(),
    )
    def broken_field(path: list[int], replacement: Any, grafana: bool) -> None:
        body = json.dumps(mutate(GRAFANA if grafana else FIRING, path, replacement)).encode()
        url = "/grafana/sink" if grafana else "/alertmanager/sink"
        server.check(url, body, "application/json")
        checked[0] += 1

    @FUZZ
    @given(
        params=st.dictionaries(
            st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]),
            st.text(max_size=60),
            max_size=5,
        ),
        body=st.binary(max_size=1024)
        | st.builds(lambda s: f"<xml><Encrypt>{s}</Encrypt></xml>".encode(), st.text()),
        method=st.sampled_from(["GET", "POST"]),
    )
    def forged_callback(params: dict[str, str], body: bytes, method: str) -> None:
        response = server.http.request(method, "/wecom/callback/ops", params=params, content=body)
        assert response.status_code in (403, 413), (response.status_code, response.text)
        count(response)

    random_bytes()
    broken_field()
    forged_callback()
    return statuses, checked[0]


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRun]:
    workdir: Path = tmp_path_factory.mktemp("secrets-fuzz")
    fake = FakeWeCom(apps=[FakeApp(CORP_ID, CORP_SECRET, AGENT_ID)], robot_keys=[ROBOT_KEY])
    # The first reply and the first robot message fail: error paths that hold credentials.
    fake.add_fault(GETTOKEN, Fault(status=502))
    fake.add_fault(MESSAGE_SEND, Fault(errcode=-1, errmsg="system busy"))
    fake.add_fault(WEBHOOK_SEND, Fault(errcode=-1, errmsg="system busy"))
    extra = '[receivers.room]\nchannel = "robot"\nrobot_key = "${SECRETS_ROBOT_KEY}"\n[delivery]\ninitial_backoff = "200ms"\n'
    env = {**corpus_env(), "SECRETS_ROBOT_KEY": ROBOT_KEY}
    with fake.serve() as api_base:
        bridge = AlertbridgeProcess(workdir, corpus_config(api_base, extra), env=env).start()
        replayer = Replayer(bridge.base_url, bridge.db_path, bridge.stderr)
        try:
            statuses, checked = _fuzz(replayer)
            echo = replayer.wecom.verify_url("secrets-echo-1616140317").text
            # Taps on a card button of an unknown reference: refused, and a refused
            # tap is answered by message/send (help would be answered passively).
            # The first reply meets the failing gettoken, the second the failing send.
            for offset in (0, 1, 2):
                tap = replayer.wecom.build_click_button(
                    "zhangsan", "task-404", "ack:404", "code-404", create_time=int(time.time()) + offset
                )
                assert replayer.wecom.send(tap).status_code == 200
                if offset == 0:  # the failed token fetch is over before the next reply asks again
                    wait_until(lambda: "callback_reply_failed" in bridge.stderr(), what="the first failure")
            alert = {**FIRING, "groupKey": "secrets-room"}
            assert replayer.target.post(
                "/alertmanager/room", json.dumps(alert).encode(), "application/json"
            ).is_success
            # A wrong bearer token is refused (and must not be logged either).
            wrong = httpx.post(
                f"{bridge.base_url}/alertmanager/sink",
                json=FIRING,
                headers={"Authorization": "Bearer wrong-token-Xy12"},
                timeout=5,
            )
            assert wrong.status_code == 401
            wait_until(lambda: len(fake.messages(WEBHOOK_SEND)) >= 1, timeout=20, what="robot message")
            wait_until(lambda: len(fake.messages(MESSAGE_SEND)) >= 1, timeout=20, what="a reply")
        finally:
            replayer.close()
            bridge.stop()
        yield FuzzRun(
            stderr=bridge.stderr(),
            stdout=bridge.stdout(),
            secrets=load_config(bridge.config_path, bridge.env).secrets(),
            issued_tokens=fake.issued_tokens(),
            statuses=statuses,
            checked=checked,
            echo=echo,
            replies=len(fake.messages(MESSAGE_SEND)),
            robot_messages=len(fake.messages(WEBHOOK_SEND)),
        )


def leaks(text: str, secrets: list[str]) -> list[str]:
    """The secrets found in ``text``: raw, percent-encoded as in a URL, or (for
    the long random access tokens) as a 16-character prefix of a truncated value."""
    found = []
    for secret in secrets:
        forms = {secret, quote(secret, safe=""), quote_plus(secret)}
        if len(secret) >= 40:
            forms.add(secret[:16])
        if any(form in text for form in forms):
            found.append(secret)
    return found


def test_fault_run_logs_hold_no_secret(fault_run: FaultRun) -> None:
    run = fault_run
    logs = run.stderr + run.stdout
    # The errors happened ...
    assert logs.count("delivery_retry") >= 10
    for reason in ("server_busy", "server_error", "timeout", "rate_limited"):
        assert f"error={reason}:" in logs, reason
    assert "wecom_token_rejected" in logs
    # ... and every kind of secret was in play: the corp secret got tokens, the
    # tokens and robot keys sent messages, the bearer token let the webhooks in.
    assert len(run.issued_tokens) >= 2
    assert any(endpoint == MESSAGE_SEND for endpoint, _ in run.delivered)
    assert any(endpoint == WEBHOOK_SEND for endpoint, _ in run.delivered)
    assert len(events_in(run.stderr, "webhook_accepted")) == len(run.notifications)
    assert len(run.secrets) == 6  # corp secret, callback token, AES key, 2 robot keys, bearer token
    assert leaks(logs, [*run.secrets, *run.issued_tokens]) == []


def test_fuzz_run_logs_hold_no_secret(fuzz_run: FuzzRun) -> None:
    logs = fuzz_run.stderr + fuzz_run.stdout
    # The hostile input was answered (and logged) as errors ...
    assert sum(n for status, n in fuzz_run.statuses.items() if 400 <= status < 500) >= FUZZ_EXAMPLES
    assert not [status for status in fuzz_run.statuses if status >= 500]
    assert fuzz_run.checked >= FUZZ_EXAMPLES  # hypothesis may skip a duplicate draw
    # Refusals are logged rate-limited: a line per kind and address, the rest counted.
    refused = events_in(fuzz_run.stderr, "webhook_refused")
    counted = events_in(fuzz_run.stderr, "webhook_refused_suppressed")
    assert (
        sum(1 + int(line["suppressed"]) for line in refused)
        + sum(int(line["suppressed"]) for line in counted)
        >= FUZZ_EXAMPLES
    )
    for line in ("webhook_refused", "callback_rejected", "callback_reply_failed", "delivery_retry"):
        assert line in logs, line
    # ... and the secrets were used: the signed URL check decrypted (callback
    # token and AES key), replies and the robot message went out (corp secret,
    # access tokens, robot key), webhooks got in (bearer token).
    assert fuzz_run.echo == "secrets-echo-1616140317"
    assert fuzz_run.replies >= 1 and fuzz_run.robot_messages >= 1
    assert fuzz_run.issued_tokens
    assert "webhook_accepted" in logs and "wrong-token-Xy12" not in logs
    assert len(fuzz_run.secrets) == 5  # corp secret, callback token, AES key, robot key, bearer token
    assert leaks(logs, [*fuzz_run.secrets, *fuzz_run.issued_tokens]) == []
