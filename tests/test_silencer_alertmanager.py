"""Silences in the real Alertmanager 0.25, and the matchers they are built from.

The Alertmanager tests run the Debian binary on loopback (one process for
the module; every test uses its own alertname so they do not see each
other's silences). Edge cases no real Alertmanager produces (a proxy's 502,
a 401, a garbage body) use httpx's MockTransport.
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbridge.config import Config, SilencerConfig
from alertbridge.errors import ConfigError
from alertbridge.silencers import (
    Matcher,
    SilenceNotFoundError,
    SilenceRequest,
    SilencerError,
    ensure_selective,
    matchers_for,
    re2_escape,
)
from alertbridge.silencers.alertmanager import AlertmanagerSilencer, parse_rfc3339, rfc3339
from alertbridge.silencers.registry import build_silencers
from tests.harness import AlertmanagerProcess, free_port

VOLATILE = ("pod", "pod_name", "pod_ip", "container_id", "instance_id")


# --- matchers_for (pure) ---------------------------------------------------


def test_one_alert_gives_equality_matchers_sorted_by_name() -> None:
    labels = {"severity": "critical", "alertname": "DiskFull", "instance": "db-1:9100"}
    assert matchers_for([labels], VOLATILE) == (
        Matcher("alertname", "DiskFull"),
        Matcher("instance", "db-1:9100"),
        Matcher("severity", "critical"),
    )


def test_differing_values_become_a_regex_of_sorted_unique_values() -> None:
    alerts = [
        {"alertname": "DiskFull", "instance": "db-2:9100"},
        {"alertname": "DiskFull", "instance": "db-1:9100"},
        {"alertname": "DiskFull", "instance": "db-2:9100"},
    ]
    assert matchers_for(alerts, VOLATILE) == (
        Matcher("alertname", "DiskFull"),
        Matcher("instance", "db-1:9100|db-2:9100", is_regex=True),
    )


def test_volatile_and_partial_labels_are_left_out() -> None:
    alerts = [
        {"alertname": "Crash", "namespace": "shop", "pod": "api-7c9f-x1", "mountpoint": "/var"},
        {"alertname": "Crash", "namespace": "shop", "pod": "api-7c9f-x2"},
        {"alertname": "Crash", "namespace": "shop", "pod": "api-7c9f-x3", "team": ""},  # "" = absent
    ]
    assert matchers_for(alerts, VOLATILE) == (Matcher("alertname", "Crash"), Matcher("namespace", "shop"))


def test_empty_value_counts_as_absent() -> None:
    alerts = [{"alertname": "A", "team": ""}, {"alertname": "A", "team": "dba"}]
    assert matchers_for(alerts, VOLATILE) == (Matcher("alertname", "A"),)


def test_all_volatile_falls_back_to_alertname() -> None:
    alerts = [{"alertname": "Crash", "pod": "a"}, {"alertname": "Crash", "pod": "b"}]
    assert matchers_for(alerts, ("pod", "alertname")) == (Matcher("alertname", "Crash"),)


def test_all_volatile_without_alertname_keeps_the_volatile_labels() -> None:
    alerts = [{"pod": "a", "node": "n1"}, {"pod": "b", "node": "n1"}]
    assert matchers_for(alerts, ("pod", "node")) == (
        Matcher("node", "n1"),
        Matcher("pod", "a|b", is_regex=True),
    )


def test_nothing_shared_gives_nothing() -> None:
    assert matchers_for([], VOLATILE) == ()
    assert matchers_for([{"a": "1"}, {"b": "2"}], VOLATILE) == ()


def test_values_are_escaped_for_re2_and_only_metacharacters() -> None:
    alerts = [{"alertname": "A", "v": "1.0+b (x)"}, {"alertname": "A", "v": "a-b c#d/e"}]
    assert matchers_for(alerts, VOLATILE)[1] == Matcher("v", r"1\.0\+b \(x\)|a-b c#d/e", is_regex=True)
    assert re2_escape("\\.+*?()|[]{}^$") == r"\\\.\+\*\?\(\)\|\[\]\{\}\^\$"
    assert re2_escape("web-1 #2 ~&:\"'/中文") == "web-1 #2 ~&:\"'/中文"


label_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
label_sets = st.lists(
    st.dictionaries(st.sampled_from(["alertname", "instance", "job", "pod", "x"]), label_values, min_size=1),
    min_size=1,
    max_size=5,
)


@given(label_sets)
def test_matchers_select_every_alert_they_were_built_from(alerts: list[dict[str, str]]) -> None:
    # Alertmanager anchors regexes: ^(?:value)$, i.e. a full match.
    for matcher in matchers_for(alerts, VOLATILE):
        for labels in alerts:
            value = labels.get(matcher.name, "")
            if matcher.is_regex:
                assert re.fullmatch(f"(?:{matcher.value})", value, re.DOTALL)
            else:
                assert value == matcher.value


@pytest.mark.parametrize(
    "matchers",
    [
        (),
        (Matcher("alertname", ".*", is_regex=True),),
        (Matcher("alertname", "A|", is_regex=True),),
        (Matcher("alertname", ""),),
        (Matcher("alertname", "A", is_equal=False),),
        (Matcher("alertname", "A", is_regex=True, is_equal=False), Matcher("job", "")),
    ],
)
def test_ensure_selective_refuses_matchers_that_match_everything(matchers: tuple[Matcher, ...]) -> None:
    with pytest.raises(SilencerError):
        ensure_selective(matchers)


def test_ensure_selective_accepts_one_selective_matcher() -> None:
    ensure_selective((Matcher("alertname", "A"), Matcher("job", ".*", is_regex=True)))
    ensure_selective((Matcher("alertname", "", is_equal=False),))
    ensure_selective((Matcher("instance", "a|b", is_regex=True),))


def test_ensure_selective_reports_a_broken_regex() -> None:
    with pytest.raises(SilencerError, match="invalid regex"):
        ensure_selective((Matcher("alertname", "(", is_regex=True),))


def test_times_are_rfc3339_utc() -> None:
    assert rfc3339(datetime(2026, 11, 29, 20, 9, 52, 274_999, tzinfo=UTC)) == "2026-11-29T20:09:52.274Z"
    east8 = datetime.fromisoformat("2026-11-29T20:09:52.5+08:00")
    assert rfc3339(east8) == "2026-11-29T12:09:52.500Z"
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2026, 11, 29))
    assert parse_rfc3339("2026-11-29T12:09:52.274Z") == datetime(2026, 11, 29, 12, 9, 52, 274_000, tzinfo=UTC)
    assert parse_rfc3339("2026-11-29T12:09:52.123456789Z").microsecond == 123_456
    assert parse_rfc3339("2026-11-29T12:09:52Z") == datetime(2026, 11, 29, 12, 9, 52, tzinfo=UTC)


# --- against the real Alertmanager ----------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def silencer_config(*urls: str, **extra: Any) -> SilencerConfig:
    return SilencerConfig.model_validate({"kind": "alertmanager", "url": list(urls), **extra})


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


async def wait_until(check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


@pytest.mark.alertmanager
async def test_create_get_list(alertmanager: AlertmanagerProcess, http: httpx.AsyncClient) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    matchers = (Matcher("alertname", unique("Create")), Matcher("instance", "web-1|web-2", is_regex=True))
    request = request_for(matchers, comment="静默 27 1h: 正在处理")

    silence_id = await silencer.create(request)

    silence = await silencer.get(silence_id)
    assert silence is not None
    assert (silence.id, silence.state, silence.matchers) == (silence_id, "active", matchers)
    assert (silence.created_by, silence.comment) == ("alertbridge:zhangsan", "静默 27 1h: 正在处理")
    assert abs(silence.ends_at - request.ends_at) < timedelta(milliseconds=2)
    assert silence_id in [s.id for s in await silencer.list()]
    assert silencer.silence_url(silence_id) == f"{alertmanager.base_url}/#/silences/{silence_id}"
    assert await silencer.get(str(uuid.uuid4())) is None


@pytest.mark.alertmanager
async def test_update_extends_in_place_and_new_matchers_give_a_new_id(
    alertmanager: AlertmanagerProcess, http: httpx.AsyncClient
) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    name = unique("Update")
    first = request_for((Matcher("alertname", name),), hours=1)
    silence_id = await silencer.create(first)

    longer = request_for(first.matchers, hours=3, comment="extended")
    assert await silencer.update(silence_id, longer) == silence_id
    silence = await silencer.get(silence_id)
    assert silence is not None and silence.state == "active" and silence.comment == "extended"
    assert silence.ends_at - first.ends_at > timedelta(hours=1, minutes=59)

    narrower = request_for((Matcher("alertname", name), Matcher("job", "node")), hours=3)
    new_id = await silencer.update(silence_id, narrower)
    assert new_id != silence_id
    old, new = await silencer.get(silence_id), await silencer.get(new_id)
    assert old is not None and old.state == "expired"
    assert new is not None and new.state == "active" and new.matchers == narrower.matchers


@pytest.mark.alertmanager
async def test_update_of_unknown_silence(alertmanager: AlertmanagerProcess, http: httpx.AsyncClient) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    with pytest.raises(SilenceNotFoundError):
        await silencer.update(str(uuid.uuid4()), request_for((Matcher("alertname", unique("Gone")),)))


@pytest.mark.alertmanager
async def test_expire(alertmanager: AlertmanagerProcess, http: httpx.AsyncClient) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    silence_id = await silencer.create(request_for((Matcher("alertname", unique("Expire")),)))

    assert await silencer.expire(silence_id) is True
    silence = await silencer.get(silence_id)
    assert silence is not None and silence.state == "expired"
    # 0.25 answers 500 "silence not found" for an id it never had: already gone.
    assert await silencer.expire(str(uuid.uuid4())) is False


@pytest.mark.alertmanager
async def test_silence_from_matchers_for_suppresses_exactly_the_group(
    alertmanager: AlertmanagerProcess, http: httpx.AsyncClient
) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    name = unique("Suppress")
    # Values with regex metacharacters: an unescaped "." would also match "v1x0".
    group = [
        {"alertname": name, "instance": "web-1:8080", "version": "v1.0", "pod": "web-7c9f-a"},
        {"alertname": name, "instance": "web-2:8080", "version": "v1.0", "pod": "web-7c9f-b"},
        {"alertname": name, "instance": "a(b)|c", "version": "v1.0", "pod": "web-7c9f-c"},
    ]
    restarted = {**group[0], "pod": "web-7c9f-z"}  # same alert, new pod name
    others = [
        {"alertname": name, "instance": "web-3:8080", "version": "v1.0", "pod": "web-7c9f-d"},
        {"alertname": name, "instance": "web-1:8080", "version": "v1x0", "pod": "web-7c9f-e"},
        {"alertname": name, "instance": "b", "version": "v1.0", "pod": "web-7c9f-f"},
    ]
    alertmanager.post_alerts([{"labels": labels} for labels in [*group, restarted, *others]])

    matchers = matchers_for(group, VOLATILE)
    assert Matcher("instance", r"a\(b\)\|c|web-1:8080|web-2:8080", is_regex=True) in matchers
    silence_id = await silencer.create(request_for(matchers))

    async def states() -> dict[str, str] | None:
        alerts = await silencer.firing_alerts((Matcher("alertname", name),))
        found = {a["fingerprint"]: a for a in alerts}
        if len(found) != 7 or any(a["status"]["state"] == "unprocessed" for a in alerts):
            return None
        return {
            f"{a['labels']['instance']} {a['labels']['version']} {a['labels']['pod']}": a["status"]["state"]
            for a in alerts
        }

    seen = await wait_until(states)
    assert seen == {
        "web-1:8080 v1.0 web-7c9f-a": "suppressed",
        "web-2:8080 v1.0 web-7c9f-b": "suppressed",
        "a(b)|c v1.0 web-7c9f-c": "suppressed",
        "web-1:8080 v1.0 web-7c9f-z": "suppressed",
        "web-3:8080 v1.0 web-7c9f-d": "active",
        "web-1:8080 v1x0 web-7c9f-e": "active",
        "b v1.0 web-7c9f-f": "active",
    }
    covered = await silencer.firing_alerts(matchers)
    assert len(covered) == 4 and all(silence_id in a["status"]["silencedBy"] for a in covered)
    not_silenced = await silencer.firing_alerts((Matcher("alertname", name),), silenced=False)
    assert len(not_silenced) == 3


@pytest.mark.alertmanager
async def test_filter_values_with_quotes_and_backslashes(
    alertmanager: AlertmanagerProcess, http: httpx.AsyncClient
) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    name = unique("Quote")
    tricky = 'say "hi"\\now'
    alertmanager.post_alerts(
        [{"labels": {"alertname": name, "msg": tricky}}, {"labels": {"alertname": name}}]
    )
    alerts = await wait_until(
        lambda: silencer.firing_alerts((Matcher("alertname", name), Matcher("msg", tricky)))
    )
    assert [a["labels"]["msg"] for a in alerts] == [tricky]


@pytest.mark.alertmanager
async def test_refusal_reason_is_shown(alertmanager: AlertmanagerProcess, http: httpx.AsyncClient) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
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
        f"Alertmanager at {alertmanager.base_url} refused, silence not created: "
        "Failed to create silence: end time can't be in the past"
    )
    assert not caught.value.unreachable


@pytest.mark.alertmanager
async def test_expire_of_a_malformed_id_is_refused(
    alertmanager: AlertmanagerProcess, http: httpx.AsyncClient
) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    with pytest.raises(SilencerError, match=r'silenceID in path must be of type uuid: "nope"$'):
        await silencer.expire("nope")


@pytest.mark.alertmanager
async def test_unselective_matchers_are_refused_before_asking(
    alertmanager: AlertmanagerProcess, http: httpx.AsyncClient
) -> None:
    silencer = AlertmanagerSilencer("am", silencer_config(alertmanager.base_url), http)
    with pytest.raises(SilencerError, match="would silence every alert"):
        await silencer.create(request_for((Matcher("alertname", ".*", is_regex=True),)))


def recording_client(seen: list[str]) -> httpx.AsyncClient:
    async def record(request: httpx.Request) -> None:
        seen.append(f"{request.url.scheme}://{request.url.netloc.decode()}")

    return httpx.AsyncClient(event_hooks={"request": [record]})


@pytest.mark.alertmanager
async def test_fails_over_to_the_next_peer_and_remembers_it(alertmanager: AlertmanagerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    seen: list[str] = []
    async with recording_client(seen) as client:
        silencer = AlertmanagerSilencer("am", silencer_config(dead, alertmanager.base_url), client)
        silence_id = await silencer.create(request_for((Matcher("alertname", unique("HA")),)))
        assert seen == [dead, alertmanager.base_url]

        seen.clear()
        assert await silencer.expire(silence_id) is True
        assert seen == [alertmanager.base_url]
    # Links point at the first peer: the configured, canonical address.
    assert silencer.silence_url(silence_id) == f"{dead}/#/silences/{silence_id}"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.alertmanager
async def test_fails_over_on_timeout(
    alertmanager: AlertmanagerProcess, http: httpx.AsyncClient, black_hole: str
) -> None:
    config = silencer_config(black_hole, alertmanager.base_url, timeout="300ms")
    silencer = AlertmanagerSilencer("am", config, http)
    silence_id = await silencer.create(request_for((Matcher("alertname", unique("Slow")),)))
    assert (await silencer.get(silence_id)) is not None


async def test_all_peers_unreachable(http: httpx.AsyncClient, black_hole: str) -> None:
    dead = free_port()
    config = silencer_config(
        f"http://admin:url-secret-pw@127.0.0.1:{dead}",
        black_hole,
        basic_auth={"username": "admin", "password": "basic-secret-pw"},
        timeout="200ms",
    )
    silencer = AlertmanagerSilencer("am", config, http)
    with pytest.raises(SilencerError) as caught:
        await silencer.create(request_for((Matcher("alertname", "X"),)))
    assert caught.value.unreachable
    assert str(caught.value) == (
        f"Alertmanager at http://127.0.0.1:{dead}, {black_hole} unreachable (cannot connect, timed out), "
        "silence not created"
    )
    assert "secret" not in str(caught.value) and "admin" not in str(caught.value)
    assert silencer.silence_url("abc") == f"http://127.0.0.1:{dead}/#/silences/abc"


# --- answers only proxies and broken setups give (MockTransport) -----------


def mock_silencer(handler: Any, *urls: str, **extra: Any) -> tuple[AlertmanagerSilencer, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    urls = urls or ("http://am-1:9093",)
    return AlertmanagerSilencer("am", silencer_config(*urls, **extra), client), client


async def test_gateway_errors_fail_over_but_refusals_do_not() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "am-1":
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        return httpx.Response(400, json="silence invalid: something")

    silencer, client = mock_silencer(handler, "http://am-1:9093", "http://am-2:9093")
    async with client:
        with pytest.raises(SilencerError) as caught:
            await silencer.create(request_for((Matcher("alertname", "X"),)))
    assert seen == ["am-1", "am-2"]
    assert (
        str(caught.value)
        == "Alertmanager at http://am-2:9093 refused, silence not created: silence invalid: something"
    )


@pytest.mark.parametrize(
    ("extra", "header"),
    [
        ({"bearer_token": "tok-123"}, "Bearer tok-123"),
        ({"basic_auth": {"username": "u", "password": "p"}}, "Basic dTpw"),
        ({}, None),
    ],
)
async def test_auth_header(extra: Mapping[str, Any], header: str | None) -> None:
    headers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("authorization"))
        return httpx.Response(200, json=[])

    silencer, client = mock_silencer(handler, **extra)
    async with client:
        assert await silencer.list() == []
    assert headers == [header]


async def test_credentials_refused_and_never_shown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text="Unauthorized")

    silencer, client = mock_silencer(handler, bearer_token="tok-secret-123")
    async with client:
        with pytest.raises(SilencerError) as caught:
            await silencer.create(request_for((Matcher("alertname", "X"),)))
    assert str(caught.value) == (
        "Alertmanager at http://am-1:9093 refused alertbridge's credentials (HTTP 401), silence not created"
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, "not json", "Alertmanager at http://am-1:9093 answered with an unexpected body"),
        (200, '{"id": 1}', "Alertmanager at http://am-1:9093 answered with an unexpected body"),
        (
            500,
            "panic: boom\ngoroutine 1 [running]:\n",
            "Alertmanager at http://am-1:9093 failed with HTTP 500, cannot read the silence: panic: boom",
        ),
    ],
)
async def test_broken_answers(status: int, body: str, expected: str) -> None:
    silencer, client = mock_silencer(lambda request: httpx.Response(status, text=body))
    async with client:
        with pytest.raises(SilencerError) as caught:
            await silencer.get(str(uuid.uuid4()))
    assert str(caught.value) == expected


async def test_expire_treats_404_as_already_gone() -> None:
    # Alertmanager 0.26 and later.
    silencer, client = mock_silencer(lambda request: httpx.Response(404))
    async with client:
        assert await silencer.expire(str(uuid.uuid4())) is False


# --- registry ---------------------------------------------------------------


async def test_build_silencers(http: httpx.AsyncClient) -> None:
    config = Config.model_validate(
        {"silencers": {"prod": {"kind": "alertmanager", "url": "http://am:9093/"}}}
    )
    silencers = build_silencers(config, http)
    assert list(silencers) == ["prod"]
    assert (silencers["prod"].name, silencers["prod"].kind) == ("prod", "alertmanager")
    assert silencers["prod"].silence_url("x") == "http://am:9093/#/silences/x"


async def test_build_silencers_refuses_two_kinds_of_auth(http: httpx.AsyncClient) -> None:
    config = Config.model_validate(
        {
            "silencers": {
                "prod": {
                    "kind": "alertmanager",
                    "url": "http://am:9093",
                    "bearer_token": "t",
                    "basic_auth": {"username": "u", "password": "p"},
                }
            }
        }
    )
    with pytest.raises(ConfigError, match="bearer_token or basic_auth, not both"):
        build_silencers(config, http)
