"""``GET|POST /wecom/callback/{app}``: WeCom's verified, encrypted callback URL.

GET answers WeCom's URL verification with the decrypted ``echostr``. POST
verifies, decrypts and parses a user's message or click, drops WeCom's
re-sends (it retries when it hears nothing within 5 s), answers 200 with an
empty body at once, and does the slow part — Alertmanager calls, replies —
in a background task that answers the user with an active message.

Every verification failure gets the same 403 with no detail, so the answer
cannot be used as an oracle; the reason is logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from alertbridge.commands import Command, CommandError, Help
from alertbridge.commands.executor import CommandExecutor
from alertbridge.commands.parser import parse_button_key, parse_command
from alertbridge.config import Config
from alertbridge.delivery import SharedBudget
from alertbridge.errors import DeliveryError, StoreError
from alertbridge.messengers.wecom.callback_errors import (
    CallbackError,
    DecryptError,
    MalformedMessage,
    ReceiverMismatch,
    SignatureMismatch,
    StaleTimestamp,
)
from alertbridge.messengers.wecom.card import button_update_body
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.crypto import CallbackCrypto, check_timestamp
from alertbridge.messengers.wecom.inbound import (
    EventMessage,
    InboundMessage,
    MediaMessage,
    TextMessage,
    dedup_key,
    parse_inbound,
)
from alertbridge.messengers.wecom.inbound_media import keep_inbound_media
from alertbridge.messengers.wecom.limits import member_limits
from alertbridge.metrics import Metrics
from alertbridge.stores.state import StateStore
from alertbridge.web.body import BodyTooLarge, read_body

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024
# WeCom re-sends for about 5 s × (3–4) tries; remember keys well beyond that.
DEDUP_TTL = timedelta(hours=1)
# enter_agent fires whenever a member opens the app: greet at most daily.
GREETING_INTERVAL = timedelta(days=1)


# What an operator checks when WeCom's callbacks are refused: the error code
# WeCom's own sample library (and its admin console) shows for the same failure,
# the app key that is most likely wrong, and why.
_REJECTION_HINTS: dict[type[CallbackError], tuple[int | None, str | None, str]] = {
    SignatureMismatch: (
        -40001,
        "token",
        "msg_signature does not match; the Token in 接收消息 settings differs",
    ),
    DecryptError: (
        -40007,
        "encoding_aes_key",
        "cannot decrypt; the EncodingAESKey in 接收消息 settings differs",
    ),
    ReceiverMismatch: (-40005, "corp_id", "decrypted for another receive id; the CorpID differs"),
    StaleTimestamp: (
        None,
        "callback_max_skew_seconds",
        "timestamp outside the window; check this host's clock (NTP)",
    ),
    MalformedMessage: (-40002, None, "the body is not WeCom's callback XML"),
}


class WeComCallback:
    def __init__(
        self,
        *,
        config: Config,
        state: StateStore,
        executor: CommandExecutor,
        client: WeComClient,
        metrics: Metrics | None = None,
        budget: SharedBudget,
        epoch: Callable[[], float] = time.time,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._state = state
        self._executor = executor
        self._client = client
        self._metrics = metrics if metrics is not None else Metrics()
        # The dispatcher's budget: a reply counts against the member's WeCom
        # limit like an alert, else replies would push alerts over it (and,
        # reserved in the store, against every replica's alerts).
        self._budget = budget
        self._epoch = epoch
        self._clock = clock
        self._crypto: dict[str, CallbackCrypto] = {}
        for name, app in config.wecom.apps.items():
            if app.token is not None and app.encoding_aes_key is not None:
                self._crypto[name] = CallbackCrypto(
                    app.token.get_secret_value(), app.encoding_aes_key.get_secret_value(), app.corp_id
                )
        self._tasks: set[asyncio.Task[None]] = set()

    async def endpoint(self, request: Request) -> Response:
        outcome, response = await self._answer(request)
        self._metrics.callbacks.labels(outcome).inc()
        return response

    async def _answer(self, request: Request) -> tuple[str, Response]:
        """The answer to one callback request, and its outcome for /metrics."""
        name = request.path_params["app"]
        crypto = self._crypto.get(name)
        if crypto is None:
            return "unknown_app", PlainTextResponse("no callback configured for this app\n", status_code=404)
        app = self._config.wecom.apps[name]
        params = request.query_params
        signature, timestamp, nonce = (params.get(k, "") for k in ("msg_signature", "timestamp", "nonce"))
        try:
            # URL verification is signed the same way and as replayable as a message.
            check_timestamp(timestamp, self._epoch(), app.callback_max_skew_seconds)
            if request.method == "GET":
                plain = crypto.verify_url(signature, timestamp, nonce, params.get("echostr", ""))
                log.info("callback_url_verified app=%s", name)
                return "url_verified", Response(plain, media_type="text/plain")
            body = await read_body(request, MAX_CALLBACK_BYTES)
            message = parse_inbound(crypto.open_message(signature, timestamp, nonce, body))
        except CallbackError as exc:
            code, key, hint = _REJECTION_HINTS.get(type(exc), (None, None, "not a WeCom callback"))
            log.warning(
                "callback_rejected app=%s reason=%s wecom_error=%s check=%s hint=%s; %s",
                name,
                _snake(type(exc).__name__),
                code,
                f"wecom.apps.{name}.{key}" if key else None,
                hint,
                exc.reason,
            )
            return _snake(type(exc).__name__), PlainTextResponse("invalid callback\n", status_code=403)
        except BodyTooLarge:
            return "too_large", PlainTextResponse("body too large\n", status_code=413)
        except ClientDisconnect:
            return "incomplete", PlainTextResponse("incomplete body\n", status_code=400)

        try:
            first = await self._state.claim_callback(f"{name}:{dedup_key(message)}", self._clock(), DEDUP_TTL)
        except StoreError as exc:
            # Without dedup we could act twice; a 503 makes WeCom try again later.
            log.error("callback_dedup_failed app=%s error=%s", name, exc)
            return "store_unavailable", PlainTextResponse("store unavailable\n", status_code=503)
        if not first:
            log.info("callback_duplicate app=%s key=%s", name, dedup_key(message))
            return "duplicate", Response(b"", media_type="text/plain")
        task = asyncio.create_task(self._handle(name, app, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "ok", Response(b"", media_type="text/plain")

    @property
    def busy(self) -> bool:
        """Still acting on a command (see ``drain``)."""
        return bool(self._tasks)

    async def drain(self) -> None:
        """Wait for running command tasks (at shutdown), so none is cut in half."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, app_name: str, app: WeComAppConfig, message: InboundMessage) -> None:
        # The background-task boundary: log anything unexpected, never crash the loop.
        try:
            await self._process(app_name, app, message)
        except Exception:
            log.exception("callback_task_failed app=%s", app_name)

    async def _process(self, app_name: str, app: WeComAppConfig, message: InboundMessage) -> None:
        user = message.from_user
        if isinstance(message, TextMessage):
            await self._run_text(app_name, app, user, message.content)
            return
        if isinstance(message, MediaMessage):
            reply = await keep_inbound_media(
                message,
                app_name=app_name,
                app=app,
                client=self._client,
                state=self._state,
                max_bytes=self._config.wecom.inbound_media_max_bytes,
                now=self._clock,
                language=self._executor.language,
            )
            await self._reply(app_name, app, user, reply)
            return
        if not isinstance(message, EventMessage):
            await self._reply(
                app_name,
                app,
                user,
                self._executor.t(
                    "暂不支持这种消息；发送“帮助”查看可用命令。",
                    "This kind of message is not supported; send “help” for commands.",
                ),
            )
            return
        if message.event == "enter_agent":
            if await self._state.claim_callback(f"greet:{app_name}:{user}", self._clock(), GREETING_INTERVAL):
                await self._reply(app_name, app, user, self._executor.short_help())
        elif message.event == "click":
            await self._run_text(app_name, app, user, message.event_key or "")
        elif message.event == "template_card_event":
            await self._run_button(app_name, app, message)
        else:
            log.info("callback_event_ignored app=%s event=%s", app_name, message.event)

    async def _run_text(self, app_name: str, app: WeComAppConfig, user: str, text: str) -> None:
        try:
            command: Command = parse_command(text, max_silence=self._config.commands.max_silence)
        except CommandError as exc:
            await self._reply(app_name, app, user, exc.message(self._executor.language))
            return
        outcome = await self._executor.execute(user, command, action=_action(command), app=app_name)
        await self._reply(app_name, app, user, outcome.reply)

    async def _run_button(self, app_name: str, app: WeComAppConfig, event: EventMessage) -> None:
        user = event.from_user
        try:
            command = parse_button_key(event.event_key or "", max_silence=self._config.commands.max_silence)
        except CommandError:
            log.warning("callback_unknown_button app=%s key=%r", app_name, (event.event_key or "")[:64])
            return
        if isinstance(command, Help):
            return
        outcome = await self._executor.execute(
            user, command, action=f"button:{_action(command)}", app=app_name
        )
        if (
            outcome.ok
            and outcome.card_label
            and event.response_code
            and event.task_id
            and await self._update_card(
                app_name, app, event.task_id, event.response_code, user, outcome.card_label
            )
        ):
            return
        await self._reply(app_name, app, user, outcome.reply)

    async def _update_card(
        self,
        app_name: str,
        app: WeComAppConfig,
        task_id: str,
        response_code: str,
        user: str,
        label: str,
    ) -> bool:
        card = await self._state.get_card(task_id)
        users = list(card.users) if card is not None and card.users else [user]
        body = button_update_body(users, response_code, label)
        try:
            await self._client.update_template_card(app_name, app, body)
        except DeliveryError as exc:
            log.warning("card_update_failed app=%s task_id=%s error=%s", app_name, task_id, exc)
            return False
        return True

    async def _reply(self, app_name: str, app: WeComAppConfig, user: str, text: str) -> None:
        """Send a reply within the member's WeCom budget; beyond it WeCom would
        drop the message silently (and the next alert with it), so it is not sent."""
        limits = member_limits(app, user)
        reserved_at = self._clock()
        try:
            reservation = await self._budget.reserve(
                limits, reserved_at, 0, send_timeout=self._config.send_timeout
            )
        except StoreError as exc:
            # Unreserved, a reply could push the member past WeCom's limit.
            self._metrics.command_replies.labels("failed").inc()
            log.error("callback_reply_not_sent app=%s user=%s reason=store error=%s", app_name, user, exc)
            return
        if reservation is None:
            self._metrics.command_replies.labels("rate_limited").inc()
            log.warning(
                "callback_reply_not_sent app=%s user=%s reason=rate_limit next_free=%s: "
                "the member's WeCom budget (%d a minute, %d an hour, shared with alerts) is spent",
                app_name,
                user,
                self._budget.memory.next_free(limits, reserved_at).isoformat(),
                app.rate_limit_per_minute,
                app.rate_limit_per_hour,
            )
            return
        body = {"touser": user, "msgtype": "text", "text": {"content": text}}
        try:
            await self._client.send_app_message(app_name, app, body)
        except DeliveryError as exc:
            self._metrics.command_replies.labels("failed").inc()
            log.error("callback_reply_failed app=%s user=%s error=%s", app_name, user, exc)
            await self._budget.refund(limits, reservation, reserved_at)
            return
        await self._budget.settle(limits, reservation, reserved_at, self._clock())
        self._metrics.command_replies.labels("sent").inc()


def _snake(name: str) -> str:
    """``SignatureMismatch`` → ``signature_mismatch``: a callback error class as a metrics label."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _action(command: Command) -> str:
    return type(command).__name__.lower()
