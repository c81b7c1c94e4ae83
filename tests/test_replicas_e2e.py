"""Three ``alertbridge serve`` replicas on one PostgreSQL, a storm, and one of them killed.

Each replica is a real process on loopback with its own ``[store] replica``
name (all on one host: the host name would be the same for all three) and a
short ``[store] lease``; they share one real PostgreSQL
(``alertbridge.testing.postgres_server``) and send to the fake WeCom over
HTTP, which enforces WeCom's per-member limits and records what it drops.

The storm is posted round-robin over the replicas, and every notification is
posted a second time to the next replica, concurrently — the copy an
Alertmanager HA peer sends, with the same body. Mid-storm one replica is
killed with SIGKILL and never restarted. What must hold:

* every notification answered 200 by some replica reaches WeCom: the dead
  replica's claimed work is taken over by the others once its lease runs out;
* each exactly once beyond WeCom's duplicate check: an HA copy is stored once
  (the dedup key is unique in the database), and a send the kill cut off goes
  again identically (WeCom drops it as a duplicate) or marked as a repeat;
* no rate-limit drop: the replicas reserve each member's WeCom budget in the
  database, so together they never send more than WeCom accepts;
* all of it within the lease, one budget window (WeCom counts a member's
  sends per minute) and a margin.

And a WeCom callback (``silence #1 1h``) that WeCom retries to another
replica — the same encrypted request to two replicas at once — makes exactly
one silence in the real Alertmanager and the same passive reply to both.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom, Fault
from alertbridge.testing.postgres_server import PostgresServer
from alertbridge.testing.wecom_callback import CallbackClient
from tests.callback_bridge import AES_KEY, FIRING, TOKEN
from tests.harness import (
    AlertbridgeProcess,
    AlertmanagerProcess,
    delivered_texts,
    deliveries_of,
    free_port,
    post_marked,
    wait_until,
)
from tests.wecom_identity import AGENT_ID
from tests.wecom_identity import CORP_ID as CALLBACK_CORP_ID
from tests.wecom_identity import SECRET as CALLBACK_SECRET

CORP_ID = "ww7c8d9e0f1a2b3c4d"
SECRET = "replicas-corp-secret-5a6b7c8d"
MEMBERS = ("zhangsan", "lisi")
REPLICAS = ("ab-east-0", "ab-east-1", "ab-east-2")
LEASE = 15.0  # seconds: [store] lease, its floor
# WeCom's per-member window: a backlog over 30 a minute waits for it to slide.
BUDGET_WINDOW = 60.0
MARGIN = 30.0
# Notifications in the storm, each its own group: more than a member's 30 a
# minute, so the replicas must share the budget and merge the rest into digests.
N = 120
# Every send takes this long at the fake, so a replica holds claimed work for a while.
SEND_DELAY = 0.3
# How alertbridge marks a message re-sent after a crash (the default language).
REPEAT = "（重复）"


def marker(index: int) -> str:
    """A string found in exactly one notification's rendered text (fixed width: no prefix clashes)."""
    return f"mkR{index:04d}x"


@pytest.fixture
def fake() -> Iterator[tuple[FakeWeCom, str]]:
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=1000002)])
    with wecom.serve() as base_url:
        yield wecom, base_url


def replica(
    workdir: Path,
    name: str,
    body: str,
    postgres: PostgresServer,
    url: str,
    env: dict[str, str],
    port: int = 0,
) -> AlertbridgeProcess:
    """One replica named ``name`` (from its environment, as ``${POD_NAME}`` in
    Kubernetes) on the database at ``url``, with the password from its environment too."""
    workdir.mkdir()
    return AlertbridgeProcess(
        workdir,
        body,
        env={**env, "ALERTBRIDGE_DB_PASSWORD": postgres.password, "REPLICA": name},
        port=port or None,
        store_url=url.replace(quote(postgres.password, safe=""), "${ALERTBRIDGE_DB_PASSWORD}"),
        store_settings=f'lease = "{LEASE:.0f}s"\nreplica = "${{REPLICA}}"',
    )


def sent(request: httpx.Request) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.send(request)


def config_body(api_base: str) -> str:
    members = ", ".join(f'"{m}"' for m in MEMBERS)
    return f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = 1000002
secret = "${{SECRET}}"
[delivery]
initial_backoff = "500ms"
max_backoff = "2s"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = [{members}]
"""


class Storm:
    """Posts notifications and remembers every answer per marker (a status, or
    the transport error's class name when the replica was dead)."""

    def __init__(self, bridges: list[AlertbridgeProcess]) -> None:
        self.bridges = bridges
        self._lock = threading.Lock()
        self.outcomes: dict[str, list[int | str]] = {}

    def post(self, index: int, replica: int) -> None:
        mark = marker(index)
        status = post_marked(self.bridges[replica].base_url, mark, "Replicas")
        with self._lock:
            self.outcomes.setdefault(mark, []).append(status)

    def accepted(self) -> set[str]:
        with self._lock:
            return {mark for mark, statuses in self.outcomes.items() if 200 in statuses}

    def answered(self) -> int:
        with self._lock:
            return sum(len(statuses) for statuses in self.outcomes.values())


def count(url: str, sql: str, *args: object) -> int:
    """``SELECT count(*) …`` on the shared database, as the application user."""

    async def fetch() -> int:
        connection = await asyncpg.connect(url)
        try:
            return int(await connection.fetchval(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(fetch())


def live_leases(url: str, replica: str) -> int:
    """Deliveries ``replica`` holds a live lease on, as the shared database says."""
    now_us = int(time.time() * 1_000_000)
    sql = "SELECT count(*) FROM deliveries WHERE lease_owner = $1 AND lease_until > $2"
    return count(url, sql, replica, now_us)


def test_three_replicas_one_killed_mid_storm_lose_nothing_double_nothing_and_keep_the_budget(
    tmp_path: Path, postgres: PostgresServer, fake: tuple[FakeWeCom, str]
) -> None:
    wecom, api_base = fake
    wecom.set_fault_rate(MESSAGE_SEND, Fault(delay=SEND_DELAY), 1.0)
    url = postgres.create_database()
    bridges = [
        replica(tmp_path / name, name, config_body(api_base), postgres, url, {"SECRET": SECRET})
        for name in REPLICAS
    ]
    storm = Storm(bridges)
    victim = bridges[2]
    started = time.monotonic()
    try:
        for bridge in bridges:
            bridge.start()

        def post_both(index: int) -> None:
            # Round-robin, and the HA peer's copy to the next replica, at once.
            first = index % len(bridges)
            with ThreadPoolExecutor(max_workers=2) as pair:
                list(
                    pair.map(lambda replica: storm.post(index, replica), (first, (first + 1) % len(bridges)))
                )

        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(post_both, range(N // 2)))
            assert storm.accepted() == {marker(i) for i in range(N // 2)}, storm.outcomes
            wait_until(lambda: len(wecom.messages()) >= 5, 20, "the first deliveries")
            futures = [pool.submit(post_both, index) for index in range(N // 2, N)]
            wait_until(lambda: storm.answered() > N + 10, 20, "second-wave answers")
            # Killed while it holds claimed work: the others must take it over.
            wait_until(lambda: live_leases(url, REPLICAS[2]) > 0, 30, "the victim holding a lease")
            victim.kill()
            killed_at = time.monotonic()
            delivered_at_kill = len(wecom.messages())
            for future in futures:
                future.result()
        # The kill landed mid-storm: not everything was out (and the victim held work, above).
        assert delivered_at_kill < N, delivered_at_kill
        assert victim.proc is not None and victim.proc.returncode == -9

        accepted = storm.accepted()
        # Every notification had a live replica among its two: each was stored.
        assert accepted == {marker(i) for i in range(N)}, storm.outcomes
        wait_until(
            lambda: all(deliveries_of(mark, delivered_texts(wecom)) for mark in accepted),
            LEASE + BUDGET_WINDOW + MARGIN,
            "every accepted notification delivered by the survivors",
        )
        finished = time.monotonic()
        time.sleep(1)  # a re-send that would double a message has its chance to arrive
        for bridge in bridges[:2]:
            assert bridge.proc is not None and bridge.proc.poll() is None, bridge.stderr()
    finally:
        for bridge in bridges:
            bridge.stop()

    # Each notification and its HA copy: one delivery in the shared outbox, all sent.
    assert count(url, "SELECT count(*) FROM deliveries") == N
    assert count(url, "SELECT count(*) FROM deliveries WHERE status = 'sent'") == N
    texts = delivered_texts(wecom)
    plain = [text for text in texts if not text.startswith(REPEAT)]
    doubled = {mark: n for mark in accepted if (n := deliveries_of(mark, plain)) > 1}
    assert not doubled, f"delivered more than once: {doubled}"
    for message in wecom.messages(MESSAGE_SEND):
        assert set(message.to_user) == set(MEMBERS), message
    # Only WeCom's duplicate check may have swallowed anything: a rate-limit drop
    # would be an accepted alert nobody saw, sent past the budget the replicas share.
    assert {m.reason for m in wecom.dropped()} <= {"duplicate"}, wecom.dropped()
    # The victim's claims went to a survivor once its lease ran out, under the survivor's name.
    takeovers = [event for bridge in bridges[:2] for event in bridge.events("outbox_lease_takeover")]
    assert takeovers, [bridge.stderr() for bridge in bridges[:2]]
    assert {event["replica"] for event in takeovers} <= set(REPLICAS[:2]), takeovers
    assert live_leases(url, REPLICAS[2]) == 0
    assert finished - killed_at < LEASE + BUDGET_WINDOW + MARGIN
    assert finished - started < LEASE + 2 * BUDGET_WINDOW + MARGIN


def test_a_callback_retried_to_another_replica_silences_once_and_replies_once(
    tmp_path: Path,
    postgres: PostgresServer,
    start_alertmanager: Callable[..., AlertmanagerProcess],
    fake_wecom: tuple[FakeWeCom, str],
) -> None:
    wecom, api_base = fake_wecom
    url = postgres.create_database()
    ports = [free_port(), free_port()]
    alertmanager = start_alertmanager(f"http://127.0.0.1:{ports[0]}/alertmanager/oncall")
    body = f"""
[wecom]
api_base = "{api_base}"
[wecom.apps.ops]
corp_id = "{CALLBACK_CORP_ID}"
agent_id = {AGENT_ID}
secret = "${{SECRET}}"
token = "${{CALLBACK_TOKEN}}"
encoding_aes_key = "${{AES_KEY}}"
[silencers.main]
kind = "alertmanager"
url = "{alertmanager.base_url}"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
silencer = "main"
"""
    env = {"SECRET": CALLBACK_SECRET, "CALLBACK_TOKEN": TOKEN, "AES_KEY": AES_KEY}
    bridges = [
        replica(tmp_path / name, name, body, postgres, url, env, port)
        for name, port in zip(REPLICAS[:2], ports, strict=True)
    ]
    try:
        for bridge in bridges:
            bridge.start()
        response = httpx.post(f"{bridges[0].base_url}/alertmanager/oncall", json=FIRING, timeout=10)
        assert response.status_code == 200, response.text
        wait_until(lambda: wecom.messages(MESSAGE_SEND), what="the alert")
        found = re.search(r"#(\d+)", wecom.messages(MESSAGE_SEND)[0].content or "")
        assert found, wecom.messages(MESSAGE_SEND)[0]
        ref = found.group(1)

        with CallbackClient(
            bridges[0].base_url, "/wecom/callback/ops", TOKEN, AES_KEY, CALLBACK_CORP_ID, AGENT_ID
        ) as user:
            request = user.build_text("zhangsan", f"silence #{ref} 1h")
            # WeCom's retry of one message (same MsgId, same bytes) landing on the
            # other replica while the first is still at it.
            copies = [
                httpx.Request(
                    "POST",
                    request.url.copy_with(scheme="http", host="127.0.0.1", port=port),
                    headers=request.headers,
                    content=request.content,
                )
                for port in ports
            ]
            with ThreadPoolExecutor(max_workers=2) as pool:
                answers = list(pool.map(sent, copies))
            assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
            # Both answered with the one reply (the retry waits for it to be stored).
            passive = [user.read_reply(answer.content) for answer in answers]

        def silences() -> list[dict[str, object]]:
            found = httpx.get(f"{alertmanager.base_url}/api/v2/silences", timeout=5).json()
            return [s for s in found if s["createdBy"] == "zhangsan"]

        def replies() -> list[str]:
            return [
                m.content or ""
                for m in wecom.messages(MESSAGE_SEND)
                if m.msgtype == "text" and m.to_user == ("zhangsan",)
            ]

        wait_until(silences, what="the silence")
        time.sleep(2)  # a second silence or reply from the other replica has its chance to arrive
        [silence] = silences()
        assert [m["value"] for m in silence["matchers"] if m["name"] == "alertname"]  # type: ignore[union-attr]
        assert passive[0].plaintext == passive[1].plaintext
        reply = passive[0].content
        assert str(silence["id"]) in reply or f"#{ref}" in reply, reply
        assert replies() == []  # answered in the responses, not by message
        # Both replicas took the request: one ran the command, the other knew it for a retry.
        executed = [e for b in bridges for e in b.events("command_executed")]
        assert [e["silence_id"] for e in executed] == [silence["id"]], executed
        assert sum(len(b.events("callback_duplicate")) for b in bridges) == 1
    finally:
        for bridge in bridges:
            bridge.stop()
