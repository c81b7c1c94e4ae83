"""/metrics and /readyz on a real server: what operators scrape and probe."""

from __future__ import annotations

import io
import json
import platform
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alertbridge import __version__
from alertbridge.app import create_app
from alertbridge.config import parse_config
from alertbridge.errors import StoreError
from alertbridge.messengers.wecom.errcodes import ErrCode, errcode_name
from alertbridge.metrics import Metrics
from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom, Fault
from alertbridge.testing.server import ServerThread
from tests.harness import wait_until
from tests.image_server import ImageServer, image_app
from tests.ingest_rig import FIRING, TOKEN, FailingStore, ingest_config, post

GRAFANA_FIRING = Path(__file__).parent / "data" / "grafana" / "unified-firing.json"


class UnwritableStore(FailingStore):
    """Also fails the readiness probe while ``failing``, as a read-only volume does."""

    async def probe(self, now: datetime) -> None:
        if self.failing:
            raise StoreError("attempt to write a readonly database")
        await super().probe(now)


@pytest.fixture
def server(tmp_path: Path, serve_app: Callable[..., str]) -> tuple[str, UnwritableStore]:
    config = ingest_config(tmp_path, console={"channel": "console"})
    store = UnwritableStore(config.store.sqlite_path)
    return serve_app(config, out=io.StringIO(), store=store), store


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_webhooks_are_counted_by_outcome_and_unknown_names_are_not_labels(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _ = server
    assert post(base_url, "/alertmanager/console", FIRING).status_code == 200
    assert post(base_url, "/alertmanager/console", b"{nope").status_code == 400
    assert post(base_url, "/alertmanager/console", FIRING, Authorization="Bearer wrong").status_code == 401
    for name in ("no-such-1", "no-such-2", "no-such-3"):
        assert post(base_url, f"/alertmanager/{name}", FIRING).status_code == 404
    samples = scrape(base_url)
    webhooks = "alertbridge_webhooks_received_total"
    assert value(samples, webhooks, source="alertmanager", receiver="console", outcome="accepted") == 1
    assert value(samples, webhooks, source="alertmanager", receiver="console", outcome="bad_payload") == 1
    # A poster without credentials must not learn from /metrics that "console" exists.
    assert value(samples, webhooks, source="alertmanager", receiver="", outcome="unauthorized") == 1
    assert value(samples, webhooks, source="alertmanager", receiver="console", outcome="unauthorized") == 0
    assert value(samples, webhooks, source="alertmanager", receiver="", outcome="unknown_receiver") == 3
    labels = {v for (_, pairs) in samples for _, v in pairs}
    assert not any(v.startswith("no-such") for v in labels)
    assert (
        value(samples, "alertbridge_build_info", version=__version__, python=platform.python_version()) == 1
    )


def test_sends_latency_and_the_outbox_are_visible(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _ = server
    for _ in range(3):
        assert post(base_url, "/alertmanager/console", FIRING).status_code == 200

    def sent() -> float:
        return value(
            scrape(base_url),
            "alertbridge_messages_sent_total",
            channel="console",
            receiver="console",
            outcome="sent",
        )

    deadline = time.monotonic() + 10
    while sent() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = scrape(base_url)
    assert (
        value(
            samples, "alertbridge_messages_sent_total", channel="console", receiver="console", outcome="sent"
        )
        == 3
    )
    assert value(samples, "alertbridge_delivery_latency_seconds_count", channel="console") == 3
    assert value(samples, "alertbridge_outbox_pending") == 0
    assert value(samples, "alertbridge_outbox_dead_letters") == 0
    assert value(samples, "alertbridge_outbox_oldest_pending_age_seconds") == 0


def test_readyz_fails_while_the_store_cannot_take_writes_and_metrics_say_why(server) -> None:  # type: ignore[no-untyped-def]
    base_url, store = server
    assert httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200
    store.failing = True
    answer = httpx.get(f"{base_url}/readyz", timeout=10)
    assert answer.status_code == 503
    assert "store not writable" in answer.text
    assert post(base_url, "/alertmanager/console", FIRING).status_code == 503
    samples = scrape(base_url)
    assert (
        value(
            samples,
            "alertbridge_webhooks_received_total",
            source="alertmanager",
            receiver="console",
            outcome="store_unavailable",
        )
        == 1
    )
    store.failing = False
    assert httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{base_url}/healthz", timeout=10).status_code == 200


def test_a_bad_grafana_signature_is_counted_without_the_receiver_name(tmp_path: Path) -> None:
    config = ingest_config(tmp_path, signed={"channel": "console", "grafana_hmac_secret": "hmac-secret-0123"})
    with ServerThread(create_app(config, out=io.StringIO())) as running:
        unsigned = httpx.post(
            f"{running.base_url}/grafana/signed",
            content=b"{}",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert unsigned.status_code == 401
        samples = scrape(running.base_url)
    webhooks = "alertbridge_webhooks_received_total"
    assert value(samples, webhooks, source="grafana", receiver="", outcome="bad_signature") == 1
    assert not any(v == "signed" for (_, pairs) in samples for _, v in pairs)


def test_no_created_series(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _ = server
    assert post(base_url, "/alertmanager/console", FIRING).status_code == 200
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    assert "alertbridge_webhooks_received_total{" in text
    assert not [line for line in text.splitlines() if re.match(r"[a-z_]+_created[{ ]", line)]


def test_no_secret_appears_in_the_metrics(server) -> None:  # type: ignore[no-untyped-def]
    base_url, _ = server
    post(base_url, "/alertmanager/console", FIRING)
    post(base_url, "/alertmanager/console", FIRING, Authorization=f"Bearer {TOKEN}x")
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    assert TOKEN not in text and "pw-123456" not in text
    assert "alertbridge_webhooks_received_total" in text


def test_callbacks_are_counted_by_outcome(tmp_path: Path) -> None:
    config = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
            "wecom": {
                "apps": {
                    "ops": {
                        "corp_id": "ww7c3a9e0d1f2b4c5a",
                        "agent_id": 1000002,
                        "secret": "corp-secret-Zq8XvT2pLm9RwK4s",
                        "token": "callbacktoken123",
                        "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                    }
                }
            },
            "receivers": {"console": {"channel": "console"}},
        },
        {},
        "test.toml",
    )
    with ServerThread(create_app(config, out=io.StringIO())) as running:
        # A fresh timestamp: a stale one is refused before the signature is looked at.
        forged = {"msg_signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "2", "echostr": "x"}
        assert (
            httpx.get(f"{running.base_url}/wecom/callback/ops", params=forged, timeout=10).status_code == 403
        )
        assert (
            httpx.get(f"{running.base_url}/wecom/callback/nope", params=forged, timeout=10).status_code == 404
        )
        samples = scrape(running.base_url)
    assert value(samples, "alertbridge_callback_requests_total", outcome="signature_mismatch") == 1
    assert value(samples, "alertbridge_callback_requests_total", outcome="unknown_app") == 1
    text = "\n".join(f"{name}{pairs}" for name, pairs in samples)
    assert "callbacktoken123" not in text and "abcdefghijklmnop" not in text


def test_wecom_tallies_dead_letters_and_group_commits_reach_metrics(tmp_path: Path) -> None:
    """What the WeCom client, the outcome writer and the outbox's writer count
    is on /metrics of a real server talking to the fake WeCom over HTTP."""
    corp_id, secret, agent_id = "ww7c3a9e0d1f2b4c5a", "corp-secret-Zq8XvT2pLm9RwK4s", 1000002
    fake = FakeWeCom([FakeApp(corp_id, secret, agent_id)], users=["alice"])
    with fake.serve() as api_base:
        config = parse_config(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
                "webhook_auth": {"bearer_token": TOKEN},
                "wecom": {
                    "api_base": api_base,
                    "apps": {"ops": {"corp_id": corp_id, "agent_id": agent_id, "secret": secret}},
                },
                "receivers": {
                    # "ghost" is no member: WeCom sends to alice and names ghost invalid.
                    "oncall": {"channel": "app", "app": "ops", "to_user": ["alice", "ghost"]},
                    "broken": {"channel": "app", "app": "ops", "to_user": ["alice"]},
                },
            },
            {},
            "test.toml",
        )
        with ServerThread(create_app(config, out=io.StringIO())) as running:
            base_url = running.base_url
            # WeCom refuses the first token once: the send is replayed with a new one.
            fake.add_fault(MESSAGE_SEND, Fault(errcode=ErrCode.INVALID_ACCESS_TOKEN))
            assert post(base_url, "/alertmanager/oncall", FIRING).status_code == 200
            wait_until(lambda: len(fake.messages(MESSAGE_SEND)) == 1, what="the oncall message")
            # A permanent refusal: retrying cannot help, the delivery is dead-lettered.
            fake.add_fault(MESSAGE_SEND, Fault(errcode=ErrCode.API_UNAUTHORIZED))
            assert post(base_url, "/alertmanager/broken", FIRING).status_code == 200
            wait_until(
                lambda: value(scrape(base_url), "alertbridge_deliveries_dead_total", receiver="broken") == 1,
                what="the broken delivery to be dead-lettered",
            )
            samples = scrape(base_url)
    assert value(samples, "alertbridge_wecom_token_replays_total", app="ops") == 1
    assert value(samples, "alertbridge_wecom_token_refreshes_total", corp_id=corp_id) == 2
    assert value(samples, "alertbridge_wecom_partial_deliveries_total", app="ops") == 1
    for refused in (ErrCode.INVALID_ACCESS_TOKEN, ErrCode.API_UNAUTHORIZED):
        assert value(samples, "alertbridge_wecom_api_errors_total", error=errcode_name(refused)) == 1
    assert value(samples, "alertbridge_outbox_dead_letters") == 1
    # Two webhooks, one after the other: each was its own group commit.
    assert value(samples, "alertbridge_outbox_group_commits_total") == 2


def test_every_metric_says_what_it_counts() -> None:
    """An operator reading /metrics (or a dashboard's tooltip) gets a HELP line for each."""
    families = list(text_string_to_metric_families(Metrics().exposition().decode()))
    assert families
    assert [f.name for f in families if len(f.documentation) < 20] == []


def test_image_and_media_tallies_reach_metrics(tmp_path: Path) -> None:
    """Images posted after a message, skipped ones by reason, and uploads the
    media cache saved are on /metrics of a real server."""
    corp_id, secret, agent_id = "ww7c3a9e0d1f2b4c5a", "corp-secret-Zq8XvT2pLm9RwK4s", 1000002
    robot_key = "robot-key-6f1d2c3b-aaaa-bbbb-cccc-0e9f8d7c6b5a"
    fake = FakeWeCom([FakeApp(corp_id, secret, agent_id)], [robot_key], users=["alice"])
    seen = ImageServer()
    # /big is over the robot's 2 MB image limit, under the fetcher's.
    with fake.serve() as api_base, ServerThread(image_app(seen)) as image_server:
        config = parse_config(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
                "webhook_auth": {"bearer_token": TOKEN},
                "images": {"allow": ["127.0.0.1"], "timeout": "3s"},
                "wecom": {
                    "api_base": api_base,
                    "apps": {"ops": {"corp_id": corp_id, "agent_id": agent_id, "secret": secret}},
                },
                "receivers": {
                    "oncall": {"channel": "app", "app": "ops", "to_user": ["alice"], "images": True},
                    "room": {"channel": "robot", "robot_key": robot_key, "images": True},
                },
            },
            {},
            "test.toml",
        )
        template = json.loads(GRAFANA_FIRING.read_text(encoding="utf-8"))

        def grafana_alert(number: int, image: str) -> bytes:
            payload = json.loads(json.dumps(template))
            payload["groupKey"] = f"metrics-images-{number}"
            payload["alerts"][0]["fingerprint"] = f"{number:016x}"
            payload["alerts"][0]["imageURL"] = f"{image_server.base_url}{image}"
            return json.dumps(payload).encode()

        with ServerThread(create_app(config, out=io.StringIO())) as running:
            base_url = running.base_url
            # The same image twice to the app: uploaded once, then found in the media cache.
            for number in (1, 2):
                assert post(base_url, "/grafana/oncall", grafana_alert(number, "/png")).status_code == 200
                wait_until(
                    lambda want=2 * number: len(fake.messages(MESSAGE_SEND)) == want, what="message and image"
                )
            assert post(base_url, "/grafana/room", grafana_alert(3, "/big")).status_code == 200
            wait_until(
                lambda: (
                    value(scrape(base_url), "alertbridge_images_total", channel="robot", outcome="too_large")
                    == 1
                ),
                what="the robot's image to be skipped",
            )
            samples = scrape(base_url)
    assert value(samples, "alertbridge_images_total", channel="app", outcome="sent") == 2
    assert value(samples, "alertbridge_wecom_media_cache_total", outcome="miss") == 1
    assert value(samples, "alertbridge_wecom_media_cache_total", outcome="hit") == 1
    assert len(fake.uploads()) == 1
