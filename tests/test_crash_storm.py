"""kill -9 in the middle of a storm, restart on the same data dir: nothing lost, nothing doubled.

alertbridge answers 200 only after the delivery is committed (WAL,
``synchronous = FULL``) and records each accepted part after WeCom answers,
so a crash at any point may at worst re-send the part that was in flight,
which WeCom's ``enable_duplicate_check`` then swallows (or, once its
interval has passed, is marked as a repeat). This test makes that
concrete with a real ``alertbridge serve``, the fake WeCom over HTTP and a
SIGKILL while both webhooks and sends are under way.

The fake delivers each message at once but holds its answer back
(``SlowAnswers``), so the kill lands in the worst spot: WeCom has the
message, alertbridge has not recorded it. (An injected ``Fault(delay=…)``
would delay *before* delivering, and the fake abandons a request whose client
went away, so a kill would only ever cut off sends WeCom never saw.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom
from alertbridge.testing.server import ServerThread
from tests.harness import AlertbridgeProcess, delivered_texts, deliveries_of, post_marked, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

MEMBERS = ("zhangsan", "lisi")

# Notifications in the storm, each its own group: ten times what WeCom lets
# through to a member in a minute, so most go out merged into digests. The
# checks look for each marker in the text of *some* delivered message.
N = 300
# How long the fake holds back its answer to each message/send it has already
# delivered: long enough that the kill lands while answers are outstanding.
SEND_DELAY = 0.4
# How alertbridge marks a message re-sent after a crash (the default language).
REPEAT = "（重复）"


def marker(index: int) -> str:
    """A string found in exactly one notification's rendered text (fixed width: no prefix clashes)."""
    return f"mkS{index:04d}x"


class Storm:
    """Posts notifications concurrently and remembers how each was answered."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._lock = threading.Lock()
        # marker -> HTTP status, or the transport error's class name when the
        # process died under the request.
        self.outcomes: dict[str, int | str] = {}

    def post(self, mark: str) -> None:
        status = post_marked(self.base_url, mark, "Storm")
        with self._lock:
            self.outcomes[mark] = status

    def accepted(self) -> set[str]:
        with self._lock:
            return {mark for mark, status in self.outcomes.items() if status == 200}

    def answered(self) -> int:
        with self._lock:
            return len(self.outcomes)


class SlowAnswers:
    """ASGI wrapper around the fake: message/send is handled (and the message
    delivered) at once, but the answer is held back ``delay`` seconds, and
    after that for as long as the gate is closed. With the gate closed, the
    answers outstanding stay outstanding until the test has killed alertbridge."""

    def __init__(self, app: ASGIApp, delay: float) -> None:
        self.app = app
        self.delay = delay
        self.on = True
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        self._held = 0

    @property
    def held(self) -> int:
        """Answers to delivered messages not yet sent back."""
        with self._lock:
            return self._held

    def close_gate(self) -> None:
        self._gate.clear()

    def open_gate(self) -> None:
        self._gate.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.on and scope["type"] == "http" and scope["path"].endswith("/" + MESSAGE_SEND)):
            await self.app(scope, receive, send)
            return

        async def held_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                with self._lock:
                    self._held += 1
                try:
                    await asyncio.sleep(self.delay)
                    while not self._gate.is_set():
                        await asyncio.sleep(0.01)
                finally:
                    with self._lock:
                        self._held -= 1
            await send(message)

        await self.app(scope, receive, held_send)


@pytest.fixture
def fake() -> Iterator[tuple[FakeWeCom, SlowAnswers, str]]:
    """The fake WeCom served over HTTP behind ``SlowAnswers``, and its base URL."""
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    slow = SlowAnswers(wecom.app, SEND_DELAY)
    with ServerThread(slow) as server:
        yield wecom, slow, server.base_url


def test_kill_9_mid_storm_loses_nothing_and_doubles_nothing(
    tmp_path: Path, fake: tuple[FakeWeCom, SlowAnswers, str]
) -> None:
    started = time.monotonic()
    wecom, slow, api_base = fake
    members = ", ".join(f'"{m}"' for m in MEMBERS)
    bridge = AlertbridgeProcess(
        tmp_path,
        f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
[delivery]
initial_backoff = "1s"
max_backoff = "2s"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = [{members}]
""",
        env={"SECRET": SECRET},
    ).start()
    marks = [marker(i) for i in range(N)]
    first_wave, second_wave = marks[: N // 2], marks[N // 2 :]
    storm = Storm(bridge.base_url)
    try:
        with ThreadPoolExecutor(max_workers=N) as pool:
            list(pool.map(storm.post, first_wave))
            assert storm.accepted() == set(first_wave), storm.outcomes
            # Sends are under way (some answered, more waiting on the slow fake)
            # when the second wave arrives and the process dies under it.
            wait_until(lambda: len(wecom.messages()) >= 2, 20, "the first deliveries")
            futures = [pool.submit(storm.post, mark) for mark in second_wave]
            wait_until(lambda: storm.answered() > len(first_wave), 10, "a second-wave answer")
            slow.close_gate()
            wait_until(lambda: slow.held > 0, 10, "a send delivered and not yet answered")
            bridge.kill()
            delivered_at_kill, unanswered_at_kill = len(wecom.messages()), slow.held
            slow.open_gate()
            for future in futures:
                future.result()
    finally:
        bridge.kill()
        slow.open_gate()
    # The kill must have landed mid-storm for this test to mean anything.
    assert 0 < delivered_at_kill < N, f"{delivered_at_kill} of {N} delivered before the kill"
    assert unanswered_at_kill > 0, "no send was in flight when the process was killed"

    slow.on = False
    bridge.start()
    try:
        # Alertmanager retries what did not get 200 (a copy that was in fact
        # stored is recognised by the store's dedup window, not stored twice).
        retried = [mark for mark in marks if storm.outcomes.get(mark) != 200]
        for mark in retried:
            storm.post(mark)
        assert storm.accepted() == set(marks), storm.outcomes
        # A member's budget spent before the kill is remembered: what is left
        # may have to wait up to a minute for WeCom's window to slide.
        wait_until(
            lambda: all(deliveries_of(mark, delivered_texts(wecom)) for mark in marks),
            75,
            "every accepted notification delivered after the restart",
        )
        time.sleep(0.5)  # a re-send that would double a message has its chance to arrive
    finally:
        bridge.stop()

    texts = delivered_texts(wecom)
    # A message in flight at the kill goes again after the restart: identical
    # while WeCom's duplicate check still hides it, else marked as a repeat.
    # Never an unmarked second copy.
    repeats = [text for text in texts if text.startswith(REPEAT)]
    plain = [text for text in texts if not text.startswith(REPEAT)]
    doubled = {mark: deliveries_of(mark, plain) for mark in marks if deliveries_of(mark, plain) > 1}
    assert not doubled, f"delivered more than once: {doubled}"
    for message in wecom.messages(MESSAGE_SEND):
        assert set(message.to_user) == set(MEMBERS), message
    # Only WeCom's duplicate check may have swallowed anything: a rate-limit drop
    # would be an accepted alert that nobody saw. Each message delivered but not
    # yet answered at the kill was sent again after the restart, identically
    # (and dropped as a duplicate) or marked; nothing else is marked.
    assert {m.reason for m in wecom.dropped()} <= {"duplicate"}, wecom.dropped()
    assert len(wecom.dropped()) + len(repeats) >= unanswered_at_kill, (unanswered_at_kill, wecom.dropped())
    assert len(repeats) <= unanswered_at_kill, repeats
    assert "alertbridge_started" in bridge.stderr()
    assert time.monotonic() - started < 120
