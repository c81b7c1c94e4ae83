"""The WeCom client against the fake WeCom over real HTTP: tokens, errcodes, secrecy."""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from alertbridge.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from alertbridge.messengers.wecom.client import WeComClient, quiet_http_loggers
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.errcodes import RULES, Action, ErrCode, classify
from alertbridge.messengers.wecom.errors import (
    PermanentWeComAPIError,
    TransientWeComAPIError,
    WeComAPIError,
    WeComHTTPError,
    WeComTransportError,
    api_error,
)
from alertbridge.messengers.wecom.token import AccessTokenCache, IssuedToken, refresh_margin
from alertbridge.testing.fake_wecom import (
    GETTOKEN,
    MESSAGE_SEND,
    WEBHOOK_SEND,
    FakeApp,
    FakeWeCom,
    Fault,
    ManualClock,
)
from tests.wecom_identity import AGENT_ID, CORP_ID, ROBOT_KEY, SECRET

APP = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr(SECRET))
USERS = ["alice", "bob", "carol", "unlicensed"]


def text(content: str = "磁盘告警", touser: str = "alice") -> dict[str, Any]:
    return {"touser": touser, "msgtype": "text", "text": {"content": content}}


@pytest.fixture
def fake(clock: ManualClock) -> FakeWeCom:
    return FakeWeCom(
        [FakeApp(CORP_ID, SECRET, AGENT_ID)],
        [ROBOT_KEY],
        users=USERS,
        unlicensed_users=["unlicensed"],
        clock=clock,
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # No pool timeout: 500 concurrent sends queue for the 100 pooled connections.
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, pool=None)) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient, wecom_url: str, clock: ManualClock) -> WeComClient:
    return WeComClient(http, wecom_url, clock=clock)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Apply the composition root's logging setup, and undo it afterwards."""
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    quiet_http_loggers()
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def dead_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---- sending ---------------------------------------------------------------


async def test_send_app_message_adds_agentid_and_posts_utf8(client: WeComClient, fake: FakeWeCom) -> None:
    result = await client.send_app_message("ops", APP, text("磁盘告警：/data 使用率 95%"))

    [message] = fake.messages(MESSAGE_SEND)
    # The fake answers 40033 to any \\uXXXX escape, so arriving at all proves UTF-8.
    assert message.content == "磁盘告警：/data 使用率 95%"
    assert message.body["agentid"] == AGENT_ID
    assert message.to_user == ("alice",)
    assert result.msgid == message.msgid
    assert not result.partial


async def test_token_is_cached_between_sends(client: WeComClient, fake: FakeWeCom) -> None:
    for i in range(3):
        await client.send_app_message("ops", APP, text(f"m{i}"))
    assert fake.gettoken_calls == 1


async def test_500_concurrent_cold_sends_fetch_one_token(client: WeComClient, fake: FakeWeCom) -> None:
    results = await asyncio.gather(
        *(client.send_app_message("ops", APP, text(f"m{i}", touser=USERS[i % 3])) for i in range(500))
    )
    assert len(results) == 500
    assert fake.gettoken_calls == 1
    assert fake.request_count(MESSAGE_SEND) == 500


async def test_concurrent_token_failures_refresh_once(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_app_message("ops", APP, text("warm up"))
    fake.expire_tokens()
    await asyncio.gather(
        *(client.send_app_message("ops", APP, text(f"m{i}", touser=USERS[i % 3])) for i in range(50))
    )
    # Every send saw 42001 with the old token, yet only one of them refreshed it.
    assert fake.gettoken_calls == 2
    assert client.token_replays == 50


async def test_concurrent_cold_sends_share_a_failed_refresh(
    http: httpx.AsyncClient, wecom_url: str, fake: FakeWeCom
) -> None:
    client = WeComClient(http, wecom_url)
    wrong = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr("wrong-secret"))
    outcomes = await asyncio.gather(
        *(client.send_app_message("ops", wrong, text()) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(o, PermanentWeComAPIError) and o.errcode == 40001 for o in outcomes)
    assert fake.gettoken_calls == 1  # a bad secret must not become 50 gettoken calls


async def test_token_is_refreshed_ahead_of_expiry(
    client: WeComClient, fake: FakeWeCom, clock: ManualClock
) -> None:
    await client.send_app_message("ops", APP, text("m0"))
    margin = refresh_margin(7200)
    clock.advance(7200 - margin - 1)
    await client.send_app_message("ops", APP, text("m1"))
    assert fake.gettoken_calls == 1
    clock.advance(2)  # inside the margin: the old token is still valid at WeCom ...
    await client.send_app_message("ops", APP, text("m2"))
    assert fake.gettoken_calls == 2  # ... but we already replaced it
    assert client.token_replays == 0  # so no send ever met an expired token
    assert fake.request_count(MESSAGE_SEND) == 3


@pytest.mark.parametrize(("lifetime", "margin"), [(7200, 720), (600, 60), (10, 5)])
def test_refresh_margin(lifetime: float, margin: float) -> None:
    assert refresh_margin(lifetime) == margin


@pytest.mark.parametrize("errcode", [40014, 42001])
async def test_token_error_invalidates_and_replays_once(
    client: WeComClient, fake: FakeWeCom, errcode: int
) -> None:
    await client.send_app_message("ops", APP, text("warm up"))
    fake.add_fault(MESSAGE_SEND, Fault(errcode=errcode))
    result = await client.send_app_message("ops", APP, text("after refresh"))

    assert result.msgid
    assert fake.gettoken_calls == 2
    assert fake.request_count(MESSAGE_SEND) == 3  # warm-up, rejected, replayed
    assert [m.content for m in fake.messages()] == ["warm up", "after refresh"]
    assert client.token_replays == 1


async def test_expired_token_at_wecom_is_replaced(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_app_message("ops", APP, text("warm up"))
    fake.expire_tokens()
    await client.send_app_message("ops", APP, text("after expiry"))
    assert fake.gettoken_calls == 2
    assert fake.messages()[-1].content == "after expiry"


async def test_a_second_token_error_is_not_replayed_again(client: WeComClient, fake: FakeWeCom) -> None:
    fake.add_fault(MESSAGE_SEND, Fault(errcode=40014), times=5)
    with pytest.raises(TransientWeComAPIError) as caught:
        await client.send_app_message("ops", APP, text())
    assert caught.value.errcode == 40014
    assert fake.request_count(MESSAGE_SEND) == 2  # exactly one replay
    assert fake.gettoken_calls == 2


async def test_bad_secret_is_permanent_and_not_retried(
    http: httpx.AsyncClient, wecom_url: str, fake: FakeWeCom
) -> None:
    client = WeComClient(http, wecom_url)
    wrong = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr("wrong-secret"))
    with pytest.raises(PermanentDeliveryError) as caught:
        await client.send_app_message("ops", wrong, text())
    assert isinstance(caught.value, WeComAPIError)
    assert caught.value.errcode == ErrCode.INVALID_SECRET
    assert caught.value.reason == "invalid_secret"
    assert fake.gettoken_calls == 1
    assert fake.request_count(MESSAGE_SEND) == 0


async def test_refresh_failure_after_token_error_surfaces_once(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_app_message("ops", APP, text("warm up"))
    fake.expire_tokens()
    fake.add_fault(GETTOKEN, Fault(errcode=40001, errmsg="invalid credential"))  # the secret was reset
    with pytest.raises(PermanentWeComAPIError) as caught:
        await client.send_app_message("ops", APP, text())
    assert caught.value.errcode == 40001
    assert fake.gettoken_calls == 2
    assert fake.request_count(MESSAGE_SEND) == 2


async def test_gettoken_answer_without_a_token_is_transient(client: WeComClient, fake: FakeWeCom) -> None:
    fake.add_fault(GETTOKEN, Fault(errcode=0, errmsg="ok"))
    with pytest.raises(WeComTransportError) as caught:
        await client.send_app_message("ops", APP, text())
    assert caught.value.reason == "bad_response"


async def test_unknown_corp_id_is_permanent(client: WeComClient) -> None:
    other = WeComAppConfig(corp_id="ww-unknown", agent_id=AGENT_ID, secret=SecretStr(SECRET))
    with pytest.raises(PermanentWeComAPIError) as caught:
        await client.send_app_message("ops", other, text())
    assert caught.value.reason == "invalid_corp_id"


# ---- partial success ---------------------------------------------------------


async def test_partly_invalid_recipients_are_reported_and_warned(
    client: WeComClient, fake: FakeWeCom, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="alertbridge.messengers.wecom.client")
    result = await client.send_app_message("ops", APP, text(touser="alice|Ghost|unlicensed"))

    assert result.partial
    assert result.invalid_user == ("ghost",)
    assert result.unlicensed_user == ("unlicensed",)
    assert client.partial_deliveries == 1
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "wecom_partial_delivery" in record.getMessage()
    assert "ghost" in record.getMessage() and "app=ops" in record.getMessage()
    assert fake.messages()[0].to_user == ("alice",)


async def test_all_recipients_invalid_is_permanent(client: WeComClient) -> None:
    with pytest.raises(PermanentWeComAPIError) as caught:
        await client.send_app_message("ops", APP, text(touser="ghost|nobody"))
    assert (caught.value.errcode, caught.value.reason) == (81013, "all_recipients_invalid")


# ---- the classification table -----------------------------------------------

CLASSIFICATION = [
    (-1, TransientDeliveryError, "server_busy"),
    (45009, TransientDeliveryError, "rate_limited"),
    (45033, TransientDeliveryError, "concurrency_limited"),
    (40014, TransientDeliveryError, "token_invalid"),
    (42001, TransientDeliveryError, "token_expired"),
    (40001, PermanentDeliveryError, "invalid_secret"),
    (40013, PermanentDeliveryError, "invalid_corp_id"),
    (41001, PermanentDeliveryError, "token_missing"),
    (40003, PermanentDeliveryError, "invalid_recipient"),
    (60111, PermanentDeliveryError, "invalid_recipient"),
    (40008, PermanentDeliveryError, "invalid_msgtype"),
    (40033, PermanentDeliveryError, "invalid_characters"),
    (40056, PermanentDeliveryError, "invalid_agent_id"),
    (40058, PermanentDeliveryError, "invalid_parameter"),
    (44004, PermanentDeliveryError, "content_empty"),
    (45002, PermanentDeliveryError, "content_too_long"),
    (45008, PermanentDeliveryError, "too_many_articles"),
    (48002, PermanentDeliveryError, "unauthorized"),
    (48006, PermanentDeliveryError, "unauthorized"),
    (60011, PermanentDeliveryError, "out_of_visibility"),
    (60020, PermanentDeliveryError, "ip_not_allowed"),
    (42017, PermanentDeliveryError, "invalid_card_button"),
    (42018, PermanentDeliveryError, "invalid_card_button"),
    (42019, PermanentDeliveryError, "invalid_card_button"),
    (42020, PermanentDeliveryError, "invalid_card_button"),
    (42038, PermanentDeliveryError, "invalid_card_button"),
    (42039, PermanentDeliveryError, "invalid_card_button"),
    (43012, PermanentDeliveryError, "callback_url_required"),
    (60140, PermanentDeliveryError, "invalid_response_code"),
    (81013, PermanentDeliveryError, "all_recipients_invalid"),
    (82001, PermanentDeliveryError, "no_recipients"),
    (86001, PermanentDeliveryError, "invalid_chatid"),
    (86003, PermanentDeliveryError, "chat_not_found"),
    (86008, PermanentDeliveryError, "chat_not_own"),
    (86215, PermanentDeliveryError, "chatid_exists"),
    (86216, PermanentDeliveryError, "invalid_chat_member"),
    (301002, PermanentDeliveryError, "agent_mismatch"),
    (93000, PermanentDeliveryError, "robot_invalid"),
    (93004, PermanentDeliveryError, "robot_disabled"),
    (40004, PermanentDeliveryError, "media_refused"),
    (40005, PermanentDeliveryError, "media_refused"),
    (40006, PermanentDeliveryError, "media_refused"),
    (40009, PermanentDeliveryError, "media_refused"),
    (40011, PermanentDeliveryError, "media_refused"),
    (45008, PermanentDeliveryError, "too_many_articles"),
    (44001, PermanentDeliveryError, "media_refused"),
    (40007, PermanentDeliveryError, "invalid_media_id"),
    (12345, PermanentDeliveryError, "api_error"),  # unknown errcodes are permanent
]


def test_every_named_errcode_has_a_rule() -> None:
    assert {int(code) for code in ErrCode} - {0} == set(RULES)
    assert {code for code, _, _ in CLASSIFICATION} >= set(RULES)


@pytest.mark.parametrize(("errcode", "kind", "reason"), CLASSIFICATION)
def test_classification_table(errcode: int, kind: type[DeliveryError], reason: str) -> None:
    error = api_error(errcode, "some errmsg", "/cgi-bin/message/send")
    assert isinstance(error, kind)
    assert isinstance(error, WeComAPIError)
    assert error.reason == reason
    assert error.errcode == errcode
    assert str(errcode) in str(error) and "some errmsg" in str(error)


@pytest.mark.parametrize(("errcode", "kind", "reason"), CLASSIFICATION)
async def test_classification_over_http(
    client: WeComClient, fake: FakeWeCom, errcode: int, kind: type[DeliveryError], reason: str
) -> None:
    # Token errcodes are replayed once, so they must come twice to surface.
    fake.add_fault(MESSAGE_SEND, Fault(errcode=errcode), times=2)
    with pytest.raises(kind) as caught:
        await client.send_app_message("ops", APP, text())
    assert caught.value.reason == reason
    expected_requests = 2 if classify(errcode).action is Action.REFRESH_TOKEN else 1
    assert fake.request_count(MESSAGE_SEND) == expected_requests


def test_rate_limit_waits_at_least_a_minute() -> None:
    error = api_error(45009, "api freq out of limit", "/cgi-bin/message/send")
    assert isinstance(error, TransientDeliveryError)
    assert error.min_delay >= 60


def test_trusted_ip_error_says_how_to_fix_it() -> None:
    error = api_error(
        60020, "not allow to access from your ip, from ip: 203.0.113.7", "/cgi-bin/message/send"
    )
    assert isinstance(error, PermanentDeliveryError)
    assert "egress IP" in str(error) and "企业可信IP" in str(error) and "admin console" in str(error)
    assert error.hint in str(error)


# ---- transport failures ----------------------------------------------------


async def test_http_502_is_transient(client: WeComClient, fake: FakeWeCom) -> None:
    fake.add_fault(MESSAGE_SEND, Fault(status=502))
    with pytest.raises(WeComTransportError) as caught:
        await client.send_app_message("ops", APP, text())
    assert isinstance(caught.value, TransientDeliveryError)
    assert caught.value.reason == "server_error"


async def test_timeout_is_transient(wecom_url: str, fake: FakeWeCom) -> None:
    fake.add_fault(GETTOKEN, Fault(delay=5))
    async with httpx.AsyncClient(timeout=0.3) as http:
        with pytest.raises(WeComTransportError) as caught:
            await WeComClient(http, wecom_url).send_app_message("ops", APP, text())
    assert caught.value.reason == "timeout"


async def test_connection_refused_is_transient(http: httpx.AsyncClient) -> None:
    client = WeComClient(http, dead_url())
    with pytest.raises(WeComTransportError) as caught:
        await client.send_robot_message(ROBOT_KEY, {"msgtype": "text", "text": {"content": "x"}})
    assert caught.value.reason == "connection_error"


async def test_non_json_answer_is_transient(client: WeComClient, fake: FakeWeCom) -> None:
    fake.add_fault(WEBHOOK_SEND, Fault(status=200))
    with pytest.raises(WeComTransportError) as caught:
        await client.send_robot_message(ROBOT_KEY, {"msgtype": "text", "text": {"content": "x"}})
    assert caught.value.reason == "bad_response"


async def test_http_429_is_transient_with_a_delay(client: WeComClient, fake: FakeWeCom) -> None:
    fake.add_fault(WEBHOOK_SEND, Fault(status=429))
    with pytest.raises(WeComTransportError) as caught:
        await client.send_robot_message(ROBOT_KEY, {"msgtype": "text", "text": {"content": "x"}})
    assert caught.value.min_delay >= 60


async def test_wrong_api_base_is_permanent(http: httpx.AsyncClient, wecom_url: str) -> None:
    client = WeComClient(http, wecom_url + "/not-wecom")
    with pytest.raises(WeComHTTPError) as caught:
        await client.send_robot_message(ROBOT_KEY, {"msgtype": "text", "text": {"content": "x"}})
    assert isinstance(caught.value, PermanentDeliveryError)
    assert caught.value.status == 404


# ---- robots -----------------------------------------------------------------


async def test_send_robot_message(client: WeComClient, fake: FakeWeCom) -> None:
    await client.send_robot_message(ROBOT_KEY, {"msgtype": "markdown", "markdown": {"content": "**告警**"}})
    [message] = fake.messages(WEBHOOK_SEND)
    assert (message.robot_key, message.content) == (ROBOT_KEY, "**告警**")


async def test_robot_rate_limit_is_transient(client: WeComClient, fake: FakeWeCom) -> None:
    for i in range(20):
        await client.send_robot_message(ROBOT_KEY, {"msgtype": "text", "text": {"content": f"m{i}"}})
    with pytest.raises(TransientWeComAPIError) as caught:
        await client.send_robot_message(ROBOT_KEY, {"msgtype": "text", "text": {"content": "m20"}})
    assert (caught.value.errcode, caught.value.reason) == (45009, "rate_limited")


async def test_unknown_robot_key_is_permanent(client: WeComClient) -> None:
    with pytest.raises(PermanentWeComAPIError) as caught:
        await client.send_robot_message("not-a-key", {"msgtype": "text", "text": {"content": "x"}})
    assert caught.value.reason == "robot_invalid"


# ---- secrets never leak ------------------------------------------------------


@dataclass(frozen=True)
class Harness:
    fake: FakeWeCom
    client: WeComClient
    http: httpx.AsyncClient
    base_url: str


Scenario = Callable[[Harness], Awaitable[object]]


async def _app_send(h: Harness) -> object:
    return await h.client.send_app_message("ops", APP, text())


async def _robot_send(h: Harness) -> object:
    await h.client.send_robot_message(ROBOT_KEY, {"msgtype": "text", "text": {"content": "x"}})
    return None


def _with_fault(endpoint: str, fault: Fault, send: Scenario, times: int = 1) -> Scenario:
    async def run(h: Harness) -> object:
        h.fake.add_fault(endpoint, fault, times)
        return await send(h)

    return run


def _after_warm_up(scenario: Scenario) -> Scenario:
    """Fetch a token first, so the failure happens on message/send with a real token in the URL."""

    async def run(h: Harness) -> object:
        await _app_send(h)
        return await scenario(h)

    return run


def _timing_out(endpoint: str, send: Scenario) -> Scenario:
    """``endpoint`` answers too late for a client with a short timeout."""

    async def run(h: Harness) -> object:
        h.fake.add_fault(endpoint, Fault(delay=5))
        async with httpx.AsyncClient(timeout=0.3) as short:
            return await send(replace(h, client=WeComClient(short, h.base_url)))

    return run


def _refused(send: Scenario) -> Scenario:
    async def run(h: Harness) -> object:
        return await send(replace(h, client=WeComClient(h.http, dead_url())))

    return run


async def _wrong_secret(h: Harness) -> object:
    wrong = WeComAppConfig(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SecretStr(SECRET + "-old"))
    return await h.client.send_app_message("ops", wrong, text())


async def _partial(h: Harness) -> object:
    return await h.client.send_app_message("ops", APP, text(touser="alice|ghost"))


LEAK_SCENARIOS: dict[str, Scenario] = {
    "gettoken-wrong-secret": _wrong_secret,
    "gettoken-errmsg-echoes-secret": _with_fault(
        GETTOKEN, Fault(errcode=40001, errmsg=f"secret {SECRET} was reset"), _app_send
    ),
    "gettoken-busy": _with_fault(GETTOKEN, Fault(errcode=-1), _app_send),
    "gettoken-502": _with_fault(GETTOKEN, Fault(status=502), _app_send),
    "gettoken-non-json": _with_fault(GETTOKEN, Fault(status=200), _app_send),
    "gettoken-timeout": _timing_out(GETTOKEN, _app_send),
    "gettoken-refused": _refused(_app_send),
    "send-busy": _after_warm_up(_with_fault(MESSAGE_SEND, Fault(errcode=-1), _app_send)),
    "send-token-invalid-twice": _after_warm_up(_with_fault(MESSAGE_SEND, Fault(errcode=40014), _app_send, 2)),
    "send-token-expired": _after_warm_up(_with_fault(MESSAGE_SEND, Fault(errcode=42001), _app_send)),
    "send-ip-not-allowed": _after_warm_up(_with_fault(MESSAGE_SEND, Fault(errcode=60020), _app_send)),
    "send-502": _after_warm_up(_with_fault(MESSAGE_SEND, Fault(status=502), _app_send)),
    "send-timeout": _timing_out(MESSAGE_SEND, _app_send),
    "send-partial": _partial,
    "robot-errmsg-echoes-key": _with_fault(
        WEBHOOK_SEND, Fault(errcode=93000, errmsg=f"invalid key {ROBOT_KEY}"), _robot_send
    ),
    "robot-rate-limited": _with_fault(WEBHOOK_SEND, Fault(errcode=45009), _robot_send),
    "robot-502": _with_fault(WEBHOOK_SEND, Fault(status=502), _robot_send),
    "robot-timeout": _timing_out(WEBHOOK_SEND, _robot_send),
    "robot-refused": _refused(_robot_send),
}


def _error_texts(error: BaseException) -> list[str]:
    """Everything an operator could see of an error: str, repr, the logged traceback."""
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


@pytest.mark.parametrize("scenario", list(LEAK_SCENARIOS.values()), ids=list(LEAK_SCENARIOS))
async def test_no_secret_in_errors_or_logs(
    scenario: Scenario,
    client: WeComClient,
    fake: FakeWeCom,
    http: httpx.AsyncClient,
    wecom_url: str,
    quiet_logs: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    try:
        await scenario(Harness(fake, client, http, wecom_url))
    except DeliveryError as error:
        texts.extend(_error_texts(error))
        # No chained exception either: httpx's would carry the request URL.
        assert error.__cause__ is None and error.__context__ is None
        logging.getLogger("test").exception("delivery failed")  # as the dispatcher would log it
    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(caplog.text)

    secrets = [SECRET, ROBOT_KEY, *fake.issued_tokens()]
    for secret in secrets:
        for text_ in texts:
            assert secret not in text_
    assert all("access_token=" not in t and "corpsecret=" not in t and "key=robot" not in t for t in texts)


async def test_httpx_would_log_the_token_without_quiet_http_loggers(
    client: WeComClient, fake: FakeWeCom, caplog: pytest.LogCaptureFixture
) -> None:
    """The reason ``quiet_http_loggers`` exists: httpx's INFO line carries the full URL."""
    caplog.set_level(logging.INFO, logger="httpx")
    await client.send_app_message("ops", APP, text())
    assert any(SECRET in r.getMessage() for r in caplog.records if r.name == "httpx")


# ---- the token cache on its own ------------------------------------------------


class FakeFetcher:
    """Issues tok-1, tok-2 … and counts calls; each fetch yields to the loop first."""

    def __init__(self, expires_in: float = 7200) -> None:
        self.calls = 0
        self.expires_in = expires_in

    async def __call__(self) -> IssuedToken:
        self.calls += 1
        await asyncio.sleep(0)
        return IssuedToken(f"tok-{self.calls}", self.expires_in)


async def test_invalidate_drops_only_the_current_token() -> None:
    fetch = FakeFetcher()
    cache = AccessTokenCache(fetch, clock=ManualClock())
    old = await cache.get()
    cache.invalidate(old)
    new = await cache.get()
    cache.invalidate(old)  # a late failure with the old token must not drop the new one
    assert await cache.get() == new == "tok-2"
    assert fetch.calls == 2


async def test_cache_repr_hides_the_token() -> None:
    cache = AccessTokenCache(FakeFetcher(), clock=ManualClock())
    await cache.get()
    assert "tok-" not in repr(cache)
