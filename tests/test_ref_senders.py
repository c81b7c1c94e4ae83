"""References are keyed on the sender: source, cluster and group key.

An Alertmanager and a Grafana both send ``{}:{}`` for a route without
``group_by``; on one receiver they once shared ``#ref`` and its ack, and a
``silence`` went to whichever silencer the receiver named.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx

from alertbridge.config import Config, parse_config
from alertbridge.senders import cluster_of, silencer_for
from alertbridge.stores.sqlite.outbox import SqliteOutboxStore
from alertbridge.stores.sqlite.state import SqliteStateStore
from alertbridge.stores.sqlite.state_schema import COMPONENT, MIGRATIONS, SCHEMA_VERSION
from alertbridge.testing.fake_wecom import MESSAGE_SEND, FakeApp, FakeWeCom
from alertbridge.testing.grafana_standin import GrafanaStandin
from alertbridge.testing.server import ServerThread
from alertbridge.testing.store_contract import OPS, at, opened
from alertbridge.testing.store_contract import make_ref_group as make_group
from alertbridge.testing.wecom_callback import CallbackClient
from tests.harness import AlertbridgeProcess, AlertmanagerProcess, wait_until
from tests.wecom_identity import AGENT_ID, CORP_ID, SECRET

DATA = Path(__file__).parent / "data"
AM = "http://alertmanager:9093"
WEBHOOK_TOKEN = "e2e-src-webhook-token-5d6e"
CALLBACK_TOKEN = "srcCallbackToken"
AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
GRAFANA = "http://grafana:3000"


def config() -> Config:
    return parse_config(
        {
            "silencers": {
                "am": {"kind": "alertmanager", "url": [AM, "http://alertmanager-1:9093"]},
                "grafana": {"kind": "grafana", "url": GRAFANA, "token": "glsa_test"},
            },
            "receivers": {"ops": {"channel": "console", "silencer": "am"}},
        },
        {},
        "test.toml",
    )


async def test_alertmanager_and_grafana_groups_with_one_key_are_two_refs(state: SqliteStateStore) -> None:
    cfg = config()
    am_group = make_group("Disk", key="{}:{}")
    grafana_group = replace(make_group("Disk", key="{}:{}"), source="grafana", external_url=GRAFANA)
    am = await state.record_notification(
        "ops", am_group, OPS, at(0), cluster=cluster_of(cfg, "alertmanager", am_group.external_url)
    )
    gf = await state.record_notification(
        "ops", grafana_group, OPS, at(0), cluster=cluster_of(cfg, "grafana", GRAFANA)
    )
    assert am.ref.ref != gf.ref.ref
    assert (am.ref.source, gf.ref.source) == ("alertmanager", "grafana")

    await state.set_ack(am.ref.ref, "zhangsan", at(1))
    # The Grafana group's repeat is neither acknowledged nor held back.
    again = await state.record_notification("ops", grafana_group, OPS, at(2), cluster=gf.ref.cluster)
    assert again.ref.ref == gf.ref.ref and again.ref.ack is None and not again.suppressed
    am_again = await state.record_notification("ops", am_group, OPS, at(2), cluster=am.ref.cluster)
    assert am_again.ref.ack is not None and am_again.suppressed

    # Each silence goes to its own sender's silencer, whatever the receiver names.
    assert silencer_for(cfg, "ops", am.ref.source, am.ref.cluster) == "am"
    assert silencer_for(cfg, "ops", gf.ref.source, gf.ref.cluster) == "grafana"


async def test_independent_alertmanagers_on_one_route_are_two_refs_ha_peers_one(
    state: SqliteStateStore,
) -> None:
    cfg = config()
    group = make_group("Disk", key="{}:{}")

    async def ref_of(external_url: str) -> int:
        sent = replace(group, external_url=external_url)
        cluster = cluster_of(cfg, "alertmanager", external_url)
        return (await state.record_notification("ops", sent, OPS, at(0), cluster=cluster)).ref.ref

    first = await ref_of(AM)
    # HA peers listed together in one silencer, each with its own external URL.
    assert await ref_of("http://ALERTMANAGER-1:9093/") == first
    # Peers sharing one external URL (the usual set-up) need no silencer at all.
    shared = await ref_of("https://am.example.org")
    assert await ref_of("https://am.example.org/") == shared
    # Another, independent Alertmanager.
    other = await ref_of("http://alertmanager.eu:9093")
    assert len({first, shared, other}) == 3


def test_no_silencer_of_the_wrong_kind() -> None:
    cfg = parse_config(
        {
            "silencers": {"am": {"kind": "alertmanager", "url": AM}},
            "receivers": {"ops": {"channel": "console", "silencer": "am"}},
        },
        {},
        "test.toml",
    )
    assert silencer_for(cfg, "ops", "alertmanager", "https://elsewhere") == "am"
    # A Grafana alert's silence created in an Alertmanager would silence nothing.
    assert silencer_for(cfg, "ops", "grafana", GRAFANA) is None


async def test_a_schema_2_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file written by the previous release: refs, an ack, a pruned number."""
    path = tmp_path / "alertbridge.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        for step in MIGRATIONS[:2]:
            for statement in step:
                conn.execute(statement)
        conn.execute("INSERT INTO schema_versions VALUES (?, 2)", (COMPONENT,))
        columns = (
            "receiver, source, group_key, external_url, title, alerts, recipients, firing,"
            " created_at, updated_at, ack_user, ack_at"
        )
        for key in ("{}:{}", '{}:{alertname="Gone"}'):
            conn.execute(
                f"INSERT INTO alert_refs ({columns}) VALUES (?, 'alertmanager', ?, ?, 'Disk',"
                ' \'[{"fingerprint": "fp-a", "labels": {"alertname": "Disk"}, "firing": true}]\','
                " '{\"to_user\": [\"zhangsan\"]}', 1, 0, 0, 'zhangsan', 0)",
                ("ops", key, AM),
            )
        conn.execute("DELETE FROM alert_refs WHERE ref = 2")  # pruned: #2 must stay unused
    conn.close()

    cfg = config()
    async with opened(SqliteOutboxStore(path)), opened(SqliteStateStore(path)) as state:
        kept = await state.get_ref(1)
        assert await state.get_ref(2) is None
        assert kept is not None and (kept.ref, kept.cluster, kept.ack is not None) == (1, "", True)
        # The same group from its Alertmanager claims the old reference, ack and all.
        cluster = cluster_of(cfg, "alertmanager", AM)
        repeat = await state.record_notification(
            "ops", make_group("Disk", key="{}:{}"), OPS, at(0), cluster=cluster
        )
        assert repeat.ref.ref == 1 and repeat.ref.cluster == cluster and repeat.ref.ack is not None
        # Grafana's `{}:{}` is a new reference, numbered after the pruned one.
        grafana_group = replace(make_group("Disk", key="{}:{}"), source="grafana", external_url=GRAFANA)
        new = await state.record_notification(
            "ops", grafana_group, OPS, at(0), cluster=cluster_of(cfg, "grafana", GRAFANA)
        )
        assert new.ref.ref == 3 and new.ref.ack is None

    conn = sqlite3.connect(path)
    try:
        version = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (COMPONENT,))
        assert version.fetchone()[0] == SCHEMA_VERSION >= 6
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"alert_refs_resolved", "alert_refs_updated"} <= indexes
    finally:
        conn.close()


def test_each_source_s_ref_is_acked_and_silenced_on_its_own(
    tmp_path: Path, start_alertmanager: Callable[..., AlertmanagerProcess]
) -> None:
    """End to end: an Alertmanager and a Grafana `{}:{}` group on one receiver;
    `silence` of each lands in its own silencer, `ack` of one leaves the other."""
    wecom = FakeWeCom(apps=[FakeApp(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)])
    alertmanager = start_alertmanager()
    standin = GrafanaStandin(alertmanager.base_url, token="glsa_e2e_src")
    with wecom.serve() as wecom_url, ServerThread(standin) as grafana:
        bridge = AlertbridgeProcess(
            tmp_path,
            f"""
[webhook_auth]
bearer_token = "{WEBHOOK_TOKEN}"
[wecom]
api_base = "{wecom_url}"
[wecom.apps.ops]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "{SECRET}"
token = "{CALLBACK_TOKEN}"
encoding_aes_key = "{AES_KEY}"
[silencers.am]
kind = "alertmanager"
url = "{alertmanager.base_url}"
[silencers.grafana]
kind = "grafana"
url = "{grafana.base_url}"
token = "glsa_e2e_src"
[receivers.oncall]
channel = "app"
app = "ops"
to_user = ["zhangsan"]
silencer = "am"
""",
        )
        bridge.start()
        try:
            am_body = json.loads((DATA / "alertmanager" / "firing-single.json").read_text(encoding="utf-8"))
            am_body.update(groupKey="{}:{}", externalURL=alertmanager.base_url)
            grafana_body = json.loads((DATA / "grafana" / "unified-firing.json").read_text(encoding="utf-8"))
            grafana_body.update(groupKey="{}:{}", externalURL=grafana.base_url)
            headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            for path, body, count in (("alertmanager", am_body, 1), ("grafana", grafana_body, 2)):
                response = httpx.post(
                    f"{bridge.base_url}/{path}/oncall", json=body, headers=headers, timeout=10
                )
                assert response.status_code == 200, response.text
                wait_until(lambda n=count: len(wecom.messages(MESSAGE_SEND)) >= n, what=f"{path}'s message")

            with CallbackClient(
                bridge.base_url, "/wecom/callback/ops", CALLBACK_TOKEN, AES_KEY, CORP_ID, AGENT_ID
            ) as user:
                user.send_text("zhangsan", "ack 1")
                assert "已确认 #1" in user.passive[-1].content  # answered in the callback response
                user.send_text("zhangsan", "silence 1 1h")
                wait_until(lambda: len(httpx.get(f"{alertmanager.base_url}/api/v2/silences").json()) == 1)
                # The Alertmanager's alert went straight to the Alertmanager.
                assert not [r for r in standin.requests if r[0] == "POST"]
                user.send_text("zhangsan", "silence 2 1h")
                wait_until(lambda: [r for r in standin.requests if r[0] == "POST"], what="Grafana's silence")
                # The stand-in records a request before it forwards it: wait for Alertmanager to have it.
                wait_until(
                    lambda: len(httpx.get(f"{alertmanager.base_url}/api/v2/silences").json()) == 2,
                    what="Grafana's silence in Alertmanager",
                )
            silences = httpx.get(f"{alertmanager.base_url}/api/v2/silences").json()
            names = sorted(m["value"] for s in silences for m in s["matchers"] if m["name"] == "alertname")
            assert names == ["DiskAlmostFull", "E2EDiskFull"]
        finally:
            bridge.kill()
    with sqlite3.connect(bridge.db_path) as db:
        rows = db.execute("SELECT ref, source, ack_user FROM alert_refs ORDER BY ref").fetchall()
    assert rows == [(1, "alertmanager", "zhangsan"), (2, "grafana", None)]
