"""Silences in Grafana's built-in Alertmanager.

Grafana cannot run here, so ``GrafanaStandin`` plays it on loopback: Grafana's
paths, bearer token, status codes and error bodies in front of the REAL
Alertmanager 0.25 (one process and one stand-in for the module; every test
uses its own alertname). What the silencer created is checked in Alertmanager
directly, not through the stand-in. Answers no stand-in gives (a 200 create,
older Grafana's 500 "already expired") use httpx's MockTransport.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from alertbridge.config import Config, SilencerConfig
from alertbridge.errors import ConfigError
from alertbridge.silencers import Matcher, SilenceNotFoundError, SilenceRequest, SilencerError
from alertbridge.silencers.counted import CountedSilencer
from alertbridge.silencers.grafana import GrafanaSilencer
from alertbridge.silencers.registry import build_silencers
from alertbridge.testing.grafana_standin import PREFIX, GrafanaStandin
from alertbridge.testing.server import ServerThread
from tests.harness import AlertmanagerProcess, free_port

TOKEN = "glsa_editor_5ecret_t0ken"
VIEWER_TOKEN = "glsa_viewer_5ecret_t0ken"


@pytest.fixture(scope="module")
def standin_server(alertmanager: AlertmanagerProcess) -> Iterator[tuple[GrafanaStandin, str]]:
    standin = GrafanaStandin(alertmanager.base_url, TOKEN, read_only_token=VIEWER_TOKEN)
    with ServerThread(standin) as server:
        yield standin, server.base_url


@pytest.fixture
def standin(standin_server: tuple[GrafanaStandin, str]) -> Iterator[GrafanaStandin]:
    standin_server[0].legacy_create_response = False
    standin_server[0].requests.clear()
    yield standin_server[0]
    standin_server[0].legacy_create_response = False


@pytest.fixture
def grafana_url(standin_server: tuple[GrafanaStandin, str]) -> str:
    return standin_server[1]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def grafana_config(url: str, token: str = TOKEN, **extra: Any) -> SilencerConfig:
    return SilencerConfig.model_validate({"kind": "grafana", "url": url, "token": token, **extra})


def request_for(
    matchers: tuple[Matcher, ...], *, hours: float = 1, comment: str = "deploying"
) -> SilenceRequest:
    now = datetime.now(UTC)
    return SilenceRequest(
        matchers=matchers,
        starts_at=now,
        ends_at=now + timedelta(hours=hours),
        created_by="alertbridge:zhangsan",
        comment=comment,
    )


def unique(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:8]}"


def in_alertmanager(alertmanager: AlertmanagerProcess, silence_id: str) -> dict[str, Any]:
    response = httpx.get(f"{alertmanager.base_url}/api/v2/silence/{silence_id}", timeout=5)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


async def wait_until(check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


# --- the stand-in answers as Grafana does ----------------------------------


@pytest.mark.alertmanager
def test_standin_speaks_grafana(standin: GrafanaStandin, grafana_url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    silences = f"{grafana_url}{PREFIX}/silences"
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": "alertname", "value": unique("Standin"), "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "test",
        "comment": "",
    }

    created = httpx.post(silences, json=body, headers=auth)
    assert created.status_code == 202 and list(created.json()) == ["silenceID"]
    standin.legacy_create_response = True
    legacy = httpx.post(silences, json=body, headers=auth)
    assert legacy.status_code == 202
    assert legacy.json() == {"message": "silence created", "id": legacy.json()["id"]}

    deleted = httpx.delete(f"{grafana_url}{PREFIX}/silence/{created.json()['silenceID']}", headers=auth)
    assert (deleted.status_code, deleted.json()) == (200, {"message": "silence deleted"})
    unknown = httpx.delete(f"{grafana_url}{PREFIX}/silence/{uuid.uuid4()}", headers=auth)
    assert (unknown.status_code, unknown.json()) == (404, {"message": "silence not found"})

    assert httpx.get(silences).status_code == 401
    assert httpx.get(silences, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(silences, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    assert httpx.get(silences, headers=viewer).status_code == 200
    assert httpx.post(silences, json=body, headers=viewer).status_code == 403
    # Alertmanager's own paths are not Grafana's.
    assert httpx.get(f"{grafana_url}/api/v2/silences", headers=auth).status_code == 404


# --- the silencer against the stand-in and the real Alertmanager -----------


@pytest.mark.alertmanager
@pytest.mark.parametrize("legacy", [False, True], ids=["silenceID", "grafana8-id"])
async def test_create_makes_the_silence_in_alertmanager(
    alertmanager: AlertmanagerProcess,
    standin: GrafanaStandin,
    grafana_url: str,
    http: httpx.AsyncClient,
    legacy: bool,
) -> None:
    standin.legacy_create_response = legacy
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url), http)
    matchers = (Matcher("alertname", unique("Create")), Matcher("instance", "web-1|web-2", is_regex=True))
    request = request_for(matchers, comment="静默 27 1h: 正在处理")

    silence_id = await silencer.create(request)

    stored = in_alertmanager(alertmanager, silence_id)
    assert stored["status"]["state"] == "active"
    assert stored["matchers"] == [
        {"name": "alertname", "value": matchers[0].value, "isRegex": False, "isEqual": True},
        {"name": "instance", "value": "web-1|web-2", "isRegex": True, "isEqual": True},
    ]
    assert (stored["createdBy"], stored["comment"]) == ("alertbridge:zhangsan", "静默 27 1h: 正在处理")
    assert standin.requests == [("POST", f"{PREFIX}/silences", f"Bearer {TOKEN}")]


@pytest.mark.alertmanager
async def test_get_and_list(grafana_url: str, http: httpx.AsyncClient) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url), http)
    matchers = (Matcher("alertname", unique("Get")), Matcher("env", "prod", is_equal=False))
    request = request_for(matchers)
    silence_id = await silencer.create(request)

    silence = await silencer.get(silence_id)
    assert silence is not None
    assert (silence.id, silence.state, silence.matchers) == (silence_id, "active", matchers)
    assert (silence.created_by, silence.comment) == ("alertbridge:zhangsan", "deploying")
    assert abs(silence.ends_at - request.ends_at) < timedelta(milliseconds=2)
    assert silence in await silencer.list()
    assert await silencer.get(str(uuid.uuid4())) is None


@pytest.mark.alertmanager
async def test_update_extends_in_place(grafana_url: str, http: httpx.AsyncClient) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url), http)
    first = request_for((Matcher("alertname", unique("Update")),), hours=1)
    silence_id = await silencer.create(first)

    assert (
        await silencer.update(silence_id, request_for(first.matchers, hours=3, comment="more")) == silence_id
    )
    silence = await silencer.get(silence_id)
    assert silence is not None and silence.comment == "more"
    assert silence.ends_at - first.ends_at > timedelta(hours=1, minutes=59)
    with pytest.raises(SilenceNotFoundError):
        await silencer.update(str(uuid.uuid4()), first)


@pytest.mark.alertmanager
async def test_expire(alertmanager: AlertmanagerProcess, grafana_url: str, http: httpx.AsyncClient) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url), http)
    silence_id = await silencer.create(request_for((Matcher("alertname", unique("Expire")),)))

    assert await silencer.expire(silence_id) is True
    assert in_alertmanager(alertmanager, silence_id)["status"]["state"] == "expired"
    # Expiring is idempotent in Grafana as in Alertmanager: 200 again.
    assert await silencer.expire(silence_id) is True
    # Grafana answers 404 for an id it does not know: already gone.
    assert await silencer.expire(str(uuid.uuid4())) is False


@pytest.mark.alertmanager
async def test_firing_alerts_show_the_silence(
    alertmanager: AlertmanagerProcess, grafana_url: str, http: httpx.AsyncClient
) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url), http)
    name = unique("Firing")
    alertmanager.post_alerts(
        [
            {"labels": {"alertname": name, "grafana_folder": "db", "instance": "db-1"}},
            {"labels": {"alertname": name, "grafana_folder": "db", "instance": "db-2"}},
        ]
    )
    silence_id = await silencer.create(request_for((Matcher("alertname", name), Matcher("instance", "db-1"))))

    async def suppressed() -> list[dict[str, Any]]:
        alerts = await silencer.firing_alerts((Matcher("alertname", name),))
        states = sorted((a["labels"]["instance"], a["status"]["state"]) for a in alerts)
        return alerts if states == [("db-1", "suppressed"), ("db-2", "active")] else []

    alerts = await wait_until(suppressed)
    assert alerts, "the silence did not take effect"
    assert [a["status"]["silencedBy"] for a in alerts if a["labels"]["instance"] == "db-1"] == [[silence_id]]
    not_silenced = await silencer.firing_alerts((Matcher("alertname", name),), silenced=False)
    assert [a["labels"]["instance"] for a in not_silenced] == ["db-2"]


@pytest.mark.alertmanager
async def test_refusal_reason_is_shown(grafana_url: str, http: httpx.AsyncClient) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url), http)
    now = datetime.now(UTC)
    past = SilenceRequest(
        matchers=(Matcher("alertname", unique("Past")),),
        starts_at=now - timedelta(hours=2),
        ends_at=now - timedelta(hours=1),
        created_by="alertbridge:zhangsan",
        comment="",
    )
    with pytest.raises(SilencerError) as caught:
        await silencer.create(past)
    assert str(caught.value) == (
        f"Grafana at {grafana_url} refused, silence not created: "
        "Failed to create silence: end time can't be in the past"
    )
    assert not caught.value.unreachable


@pytest.mark.alertmanager
async def test_wrong_token_is_refused_and_never_shown(grafana_url: str, http: httpx.AsyncClient) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url, token="glsa_wr0ng_5ecret"), http)
    with pytest.raises(SilencerError) as caught:
        await silencer.create(request_for((Matcher("alertname", unique("Token")),)))
    assert str(caught.value) == (
        f"Grafana at {grafana_url} refused alertbridge's credentials (HTTP 401), silence not created: "
        "check the service-account token"
    )
    assert "5ecret" not in str(caught.value) and not caught.value.unreachable


@pytest.mark.alertmanager
async def test_viewer_token_may_read_but_not_silence(grafana_url: str, http: httpx.AsyncClient) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config(grafana_url, token=VIEWER_TOKEN), http)
    assert isinstance(await silencer.list(), list)
    with pytest.raises(SilencerError) as caught:
        await silencer.create(request_for((Matcher("alertname", unique("Viewer")),)))
    message = str(caught.value)
    assert message.startswith(
        f"Grafana at {grafana_url} refused alertbridge's credentials (HTTP 403), silence not created: "
    )
    assert "Editor role" in message and "5ecret" not in message


async def test_unreachable(http: httpx.AsyncClient) -> None:
    port = free_port()
    silencer = GrafanaSilencer("grafana", grafana_config(f"http://admin:pw-5ecret@127.0.0.1:{port}"), http)
    with pytest.raises(SilencerError) as caught:
        await silencer.create(request_for((Matcher("alertname", "X"),)))
    assert caught.value.unreachable
    assert str(caught.value) == (
        f"Grafana at http://127.0.0.1:{port} unreachable (cannot connect), silence not created"
    )
    assert "5ecret" not in str(caught.value)


async def test_silence_url_opens_the_silence_in_grafana(http: httpx.AsyncClient) -> None:
    silencer = GrafanaSilencer("grafana", grafana_config("https://ops.example.com/grafana/"), http)
    assert silencer.kind == "grafana"
    assert silencer.silence_url("1b2c3d4e-0000-4000-8000-000000000000") == (
        "https://ops.example.com/grafana/alerting/silence/1b2c3d4e-0000-4000-8000-000000000000/edit"
        "?alertmanager=grafana"
    )


# --- answers the stand-in does not give (MockTransport) --------------------


MockSilencer = Callable[..., GrafanaSilencer]


@pytest.fixture
async def mock_silencer() -> AsyncIterator[MockSilencer]:
    """``mock_silencer(handler, url=…)``: a silencer whose requests ``handler`` answers."""
    clients: list[httpx.AsyncClient] = []

    def make(handler: Any, url: str = "https://ops.example.com/grafana") -> GrafanaSilencer:
        clients.append(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        return GrafanaSilencer("grafana", grafana_config(url), clients[-1])

    yield make
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize(
    ("status", "body"),
    [(202, {"silenceID": "new-id"}), (200, {"silenceID": "new-id"}), (202, {"message": "x", "id": "new-id"})],
)
async def test_create_accepts_every_answer_grafana_gives(
    status: int, body: dict[str, str], mock_silencer: MockSilencer
) -> None:
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.headers.get("authorization")))
        return httpx.Response(status, json=body)

    silencer = mock_silencer(handler)
    assert await silencer.create(request_for((Matcher("alertname", "X"),))) == "new-id"
    assert seen == [
        (
            "POST",
            "https://ops.example.com/grafana/api/alertmanager/grafana/api/v2/silences",
            f"Bearer {TOKEN}",
        )
    ]


async def test_create_without_an_id_is_an_unexpected_body(mock_silencer: MockSilencer) -> None:
    silencer = mock_silencer(lambda request: httpx.Response(202, json={"message": "silence created"}))
    with pytest.raises(SilencerError, match=r"^Grafana at https://ops\.example\.com/grafana answered"):
        await silencer.create(request_for((Matcher("alertname", "X"),)))


async def test_expire_treats_older_grafanas_already_expired_as_gone(mock_silencer: MockSilencer) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"message": "silence abc already expired: unable to delete silence"})

    assert await mock_silencer(handler).expire("abc") is False


async def test_errors_show_grafanas_message(mock_silencer: MockSilencer) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"message": "Alertmanager is not ready yet", "traceID": ""})

    with pytest.raises(SilencerError) as caught:
        await mock_silencer(handler).list()
    assert str(caught.value) == (
        "Grafana at https://ops.example.com/grafana refused, cannot list silences: Alertmanager is not ready yet"
    )


# --- registry ---------------------------------------------------------------


async def test_build_silencers_builds_both_kinds(http: httpx.AsyncClient) -> None:
    config = Config.model_validate(
        {
            "silencers": {
                "am": {"kind": "alertmanager", "url": "http://am:9093"},
                "grafana": {"kind": "grafana", "url": "https://grafana.example.com/", "token": TOKEN},
            }
        }
    )
    silencers = build_silencers(config, http)
    assert {name: s.kind for name, s in silencers.items()} == {"am": "alertmanager", "grafana": "grafana"}
    assert isinstance(silencers["grafana"], CountedSilencer)
    assert isinstance(silencers["grafana"].inner, GrafanaSilencer)
    assert silencers["grafana"].silence_url("x") == (
        "https://grafana.example.com/alerting/silence/x/edit?alertmanager=grafana"
    )


@pytest.mark.parametrize(
    ("silencer", "expected"),
    [
        ({"kind": "grafana", "url": "https://g"}, "silencers.g.token: a grafana silencer needs"),
        (
            {"kind": "grafana", "url": "https://g", "token": "t", "bearer_token": "t"},
            'silencers.g: kind = "grafana" uses token',
        ),
        (
            {"kind": "grafana", "url": ["https://g1", "https://g2"], "token": "t"},
            "silencers.g.url: a grafana silencer takes one",
        ),
        (
            {"kind": "alertmanager", "url": "http://am", "token": "t"},
            'silencers.g.token: only for kind = "grafana"',
        ),
    ],
)
async def test_build_silencers_refuses_credentials_of_the_other_kind(
    http: httpx.AsyncClient, silencer: dict[str, Any], expected: str
) -> None:
    config = Config.model_validate({"silencers": {"g": silencer}})
    with pytest.raises(ConfigError) as caught:
        build_silencers(config, http)
    assert expected in str(caught.value)
