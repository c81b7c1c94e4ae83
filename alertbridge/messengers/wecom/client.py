"""The WeCom API client: app messages (``message/send``, ``message/update_template_card``,
``message/recall``), app group chats (``appchat/*``: in ``chat_calls``), temporary media (``media/upload``,
``media/get``, the robot's ``webhook/upload_media``: in ``media_calls``), group
robots (``webhook/send``) and the two
contact reads command authorization needs (``user/get``, ``tag/get``: in ``contact_calls``).

One ``httpx.AsyncClient`` per process is passed in; the composition root
creates it with timeouts and closes it. The client keeps one access-token
cache per app and turns every outcome into either a result or one of the
errors in ``alertbridge.messengers.wecom.errors``.

Credentials travel in query strings (``corpsecret``, ``access_token``,
``key``), so this module never logs a URL; the HTTP exchange itself, which
keeps credentials out of errors and answers, is ``transport``. httpx itself
logs every request URL at INFO: the composition root must call
``quiet_http_loggers()`` at start-up.

API reference: docs/wecom-api.md §4 (access_token, message/send), §5 (robots)
and §7 (media/upload).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from alertbridge.messengers.wecom.chat_calls import WeComChatCalls
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.contact_calls import WeComContactCalls
from alertbridge.messengers.wecom.errcodes import ErrCode, is_token_error
from alertbridge.messengers.wecom.errors import WeComTransportError, api_error
from alertbridge.messengers.wecom.media import MediaCache
from alertbridge.messengers.wecom.media_calls import WeComMediaCalls
from alertbridge.messengers.wecom.token import AccessTokenCache, Clock, IssuedToken
from alertbridge.messengers.wecom.transport import Answer, WeComTransport
from alertbridge.metrics import Metrics

logger = logging.getLogger(__name__)

GETTOKEN = "/cgi-bin/gettoken"
MESSAGE_SEND = "/cgi-bin/message/send"
UPDATE_TEMPLATE_CARD = "/cgi-bin/message/update_template_card"
MESSAGE_RECALL = "/cgi-bin/message/recall"
MENU_CREATE = "/cgi-bin/menu/create"
WEBHOOK_SEND = "/cgi-bin/webhook/send"


def quiet_http_loggers() -> None:
    """Stop httpx/httpcore from logging requests: their INFO line prints the full
    URL, which carries the access token, corp secret or robot key.

    Call once at start-up, before the first request (the composition root does).
    """
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class AppSendResult:
    """A successful ``message/send``.

    WeCom answers errcode 0 even when some recipients were invalid, out of the
    app's visibility or unlicensed; those are listed here (lower-cased user ids,
    as WeCom returns them). ``msgid`` enables recall.
    """

    msgid: str
    invalid_user: tuple[str, ...] = ()
    invalid_party: tuple[str, ...] = ()
    invalid_tag: tuple[str, ...] = ()
    unlicensed_user: tuple[str, ...] = ()
    # Only for button/vote/multiple interaction cards: the one-use code that
    # lets message/update_template_card change the card for its recipients.
    response_code: str = ""

    @property
    def partial(self) -> bool:
        """Some recipients did not get the message."""
        return bool(self.invalid_user or self.invalid_party or self.invalid_tag or self.unlicensed_user)


class WeComClient(WeComChatCalls, WeComContactCalls, WeComMediaCalls):
    """Sends app and robot messages; one per process, shared by all channels.

    Counters: ``partial_deliveries`` counts successful app sends that listed
    invalid/unlicensed recipients, ``token_replays`` counts sends replayed
    after a token error; both, errors and token refreshes go to ``metrics``.

    ``media_cache`` holds the media ids of uploaded media by scope, type and
    content hash (on the client's clock), shared by every channel that uses
    this client.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_base: str,
        *,
        clock: Clock = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else Metrics()
        self._transport = WeComTransport(http, api_base, self._metrics)
        self._clock = clock
        self._tokens: dict[tuple[str, str, int, str], AccessTokenCache] = {}
        self.partial_deliveries = 0
        self.token_replays = 0
        self.media_cache = MediaCache(clock=clock, metrics=self._metrics)

    async def send_app_message(
        self, app_name: str, app: WeComAppConfig, body: Mapping[str, object]
    ) -> AppSendResult:
        """Send one app message; ``body`` is the message/send JSON without ``agentid``.

        On an invalid or expired token (40014, 42001) the token is dropped and
        the request replayed exactly once with a fresh one.

        Raises:
            TransientDeliveryError: a retryable errcode or a transport failure.
            PermanentDeliveryError: any other errcode, including a failed token
                refresh with a bad secret or corp id.
        """
        payload = {**body, "agentid": app.agent_id}
        answer = await self._app_call(app_name, app, MESSAGE_SEND, payload)
        result = AppSendResult(
            msgid=str(answer.data.get("msgid", "")),
            invalid_user=_split(answer.data.get("invaliduser")),
            invalid_party=_split(answer.data.get("invalidparty")),
            invalid_tag=_split(answer.data.get("invalidtag")),
            unlicensed_user=_split(answer.data.get("unlicenseduser")),
            response_code=_string(answer.data.get("response_code")),
        )
        if result.partial:
            self.partial_deliveries += 1
            self._metrics.partial_deliveries.labels(app_name).inc()
            logger.warning(
                "wecom_partial_delivery app=%s msgid=%s invaliduser=%s invalidparty=%s "
                "invalidtag=%s unlicenseduser=%s: these recipients did not get the message",
                app_name,
                result.msgid,
                "|".join(result.invalid_user),
                "|".join(result.invalid_party),
                "|".join(result.invalid_tag),
                "|".join(result.unlicensed_user),
            )
        return result

    async def update_template_card(
        self, app_name: str, app: WeComAppConfig, body: Mapping[str, object]
    ) -> None:
        """Update a sent template card (``message/update_template_card``, docs §4.4).

        ``body`` is the request JSON without ``agentid``: the ``response_code``
        from the send answer or a click callback, the recipients (``userids``,
        ``partyids``, ``tagids``, ``atall``) and either ``button.replace_name``
        (grey out the buttons with that label) or a whole new ``template_card``.
        Token errors are replayed once, as for ``send_app_message``; the replay
        is safe because a rejected token means WeCom did not use the code.

        Raises:
            PermanentWeComAPIError: 60140 (``ErrCode.INVALID_RESPONSE_CODE``,
                reason ``invalid_response_code``) when the code was already used
                or has expired, and every other permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure.
        """
        payload = {**body, "agentid": app.agent_id}
        await self._app_call(app_name, app, UPDATE_TEMPLATE_CARD, payload)

    async def recall_message(self, app_name: str, app: WeComAppConfig, msgid: str) -> None:
        """Recall an app message sent within the last 24 hours (``message/recall``,
        docs §4.5): it disappears from the WeCom clients (not from the WeChat plugin).

        Raises:
            PermanentWeComAPIError: the msgid is unknown, not the app's, or too old.
            TransientDeliveryError: a retryable errcode or a transport failure.
        """
        await self._app_call(app_name, app, MESSAGE_RECALL, {"msgid": msgid})

    async def create_menu(self, app_name: str, app: WeComAppConfig, body: Mapping[str, object]) -> None:
        """Replace the app's menu (``menu/create``; the agent id goes in the query).

        Raises:
            DeliveryError: WeCom refused the menu (its errcode) or could not be reached.
        """

        async def call(token: str) -> Answer:
            params = {"access_token": token, "agentid": str(app.agent_id)}
            return await self._transport.post(MENU_CREATE, params, body, secrets=(token,))

        await self._with_token(app_name, app, MENU_CREATE, call)

    async def send_robot_message(self, key: str, body: Mapping[str, object]) -> None:
        """Send one group-robot message (``body`` is the webhook/send JSON).

        Raises:
            TransientDeliveryError: a retryable errcode (45009: over 20/min) or a transport failure.
            PermanentDeliveryError: any other errcode (93000: wrong key, 40058: too long …).
        """
        answer = await self._transport.post(WEBHOOK_SEND, {"key": key}, body, secrets=(key,))
        if answer.errcode != ErrCode.OK:
            raise api_error(answer.errcode, answer.errmsg, WEBHOOK_SEND)

    async def _app_call(
        self, app_name: str, app: WeComAppConfig, endpoint: str, payload: Mapping[str, object]
    ) -> Answer:
        """POST ``payload`` to an app endpoint with the app's access token.

        On an invalid or expired token (40014, 42001) the token is dropped and
        the request replayed exactly once with a fresh one; any other non-zero
        errcode (or the replay's) is raised.
        """

        async def call(token: str) -> Answer:
            return await self._transport.post(endpoint, {"access_token": token}, payload, secrets=(token,))

        return await self._with_token(app_name, app, endpoint, call)

    async def _app_get(
        self, app_name: str, app: WeComAppConfig, endpoint: str, params: Mapping[str, str]
    ) -> Answer:
        """GET an app endpoint with the app's access token (replayed once after a token error)."""

        async def call(token: str) -> Answer:
            return await self._transport.request(
                "GET", endpoint, {**params, "access_token": token}, None, secrets=(token,)
            )

        return await self._with_token(app_name, app, endpoint, call)

    async def _with_token(
        self,
        app_name: str,
        app: WeComAppConfig,
        endpoint: str,
        call: Callable[[str], Awaitable[Answer]],
    ) -> Answer:
        """``call(token)`` with the app's access token, replayed once after a token error."""
        cache = self._token_cache(app_name, app)
        token = await cache.get()
        answer = await call(token)
        if is_token_error(answer.errcode):
            logger.info(
                "wecom_token_rejected app=%s endpoint=%s errcode=%d: refreshing and replaying once",
                app_name,
                endpoint,
                answer.errcode,
            )
            cache.invalidate(token)
            self.token_replays += 1
            self._metrics.token_replays.labels(app_name).inc()
            token = await cache.get()
            answer = await call(token)
        if answer.errcode != ErrCode.OK:
            raise api_error(answer.errcode, answer.errmsg, endpoint)
        return answer

    def _token_cache(self, app_name: str, app: WeComAppConfig) -> AccessTokenCache:
        secret = app.secret.get_secret_value()
        # Keyed by the credentials too, so a reloaded config with a new secret
        # gets a new cache; the key holds a digest, never the secret.
        key = (app_name, app.corp_id, app.agent_id, hashlib.sha256(secret.encode()).hexdigest())
        cache = self._tokens.get(key)
        if cache is None:

            async def fetch() -> IssuedToken:
                return await self._fetch_token(app_name, app)

            cache = AccessTokenCache(fetch, clock=self._clock)
            self._tokens[key] = cache
        return cache

    async def _fetch_token(self, app_name: str, app: WeComAppConfig) -> IssuedToken:
        secret = app.secret.get_secret_value()
        params = {"corpid": app.corp_id, "corpsecret": secret}
        answer = await self._transport.request("GET", GETTOKEN, params, None, secrets=(secret,))
        if answer.errcode != ErrCode.OK:
            raise api_error(answer.errcode, answer.errmsg, GETTOKEN)
        token = answer.data.get("access_token")
        expires_in = answer.data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int) or expires_in <= 0:
            raise WeComTransportError(
                GETTOKEN,
                "answer lacks access_token or a positive expires_in",
                reason="bad_response",
            )
        logger.info("wecom_token_refreshed app=%s expires_in=%d", app_name, expires_in)
        self._metrics.token_refreshes.labels(app.corp_id).inc()
        return IssuedToken(token, float(expires_in))


def _string(value: object) -> str:
    """A string field of an answer, "" when absent or of another type."""
    return value if isinstance(value, str) else ""


def _split(value: object) -> tuple[str, ...]:
    """WeCom lists rejected recipients as one "|"-joined string ("" when none)."""
    if not isinstance(value, str) or not value:
        return ()
    return tuple(part for part in value.split("|") if part)
