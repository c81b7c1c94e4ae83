"""``GET|POST /wecom/callback/{app}``: WeCom's verified, encrypted callback URL.

GET answers WeCom's URL verification with the decrypted ``echostr``. POST
verifies, decrypts and parses a user's message or click and runs it
(``CallbackAnswers``). What it has to say goes back **passively**, encrypted
in the HTTP response (no token, no send quota, works when sending is refused),
if it is ready within the app's ``callback_reply_budget``; otherwise the
response says "working on it" and the result follows through
``ActiveReplies``. WeCom re-sends a callback it heard nothing from within 5 s:
a re-send acts no second time but gets the reply saved with the dedup key,
on whichever replica it lands.

Every verification failure gets the same 403 with no detail, so the answer
cannot be used as an oracle; the reason is logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from alertbridge.commands.executor import CommandExecutor
from alertbridge.config import Config
from alertbridge.delivery import SharedBudget
from alertbridge.errors import StoreError
from alertbridge.messengers.wecom.active_replies import ActiveReplies
from alertbridge.messengers.wecom.callback_answers import CallbackAnswers
from alertbridge.messengers.wecom.callback_endpoint import UNKNOWN_APP, UNKNOWN_APP_BODY
from alertbridge.messengers.wecom.callback_errors import (
    CallbackError,
    DecryptError,
    MalformedMessage,
    ReceiverMismatch,
    SignatureMismatch,
    StaleTimestamp,
)
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.crypto import CallbackCrypto, check_timestamp
from alertbridge.messengers.wecom.inbound import EventMessage, InboundMessage, dedup_key, parse_inbound
from alertbridge.messengers.wecom.passive import NOTHING, Answer, button_reply, text_reply
from alertbridge.metrics import Metrics
from alertbridge.stores.state import StateStore
from alertbridge.web.body import BodyTooLarge, read_body

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024
# WeCom re-sends for about 5 s × (3–4) tries; remember keys well beyond that.
DEDUP_TTL = timedelta(hours=1)
# A re-send waits this long past the budget for the first request's reply to
# be saved (WeCom re-sends only after 5 s, so it is normally there at once),
# polling the store every _POLL seconds.
_SAVE_GRACE = 1.0
_POLL = 0.1


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
        self._metrics = metrics if metrics is not None else Metrics()
        self._epoch = epoch
        self._clock = clock
        self._answers = CallbackAnswers(
            config=config, state=state, executor=executor, client=client, metrics=self._metrics, clock=clock
        )
        self._active = ActiveReplies(
            config=config, state=state, client=client, metrics=self._metrics, budget=budget, clock=clock
        )
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
            return UNKNOWN_APP, PlainTextResponse(UNKNOWN_APP_BODY, status_code=404)
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

        key = f"{name}:{dedup_key(message)}"
        try:
            first = await self._state.claim_callback(key, self._clock(), DEDUP_TTL)
        except StoreError as exc:
            # Without dedup we could act twice; a 503 makes WeCom try again later.
            log.error("callback_dedup_failed app=%s error=%s", name, exc)
            return "store_unavailable", PlainTextResponse("store unavailable\n", status_code=503)
        if not first:
            log.info("callback_duplicate app=%s key=%s", name, dedup_key(message))
            reply = await self._saved_reply(key, app)
        else:
            reply = await self._respond(name, app, message)
            try:
                await self._state.save_callback_reply(key, reply)
            except StoreError as exc:
                # WeCom's retry (if any) then gets an empty answer, never a second action.
                log.warning("callback_reply_not_saved app=%s error=%s", name, exc)
        if reply:
            self._metrics.command_replies.labels("passive").inc()
        return "ok" if first else "duplicate", self._sealed(crypto, reply, timestamp)

    async def _respond(self, app_name: str, app: WeComAppConfig, message: InboundMessage) -> str:
        """Run ``message`` and return the plaintext of its passive reply ("" for none).

        What is not ready within the budget, and a card click's text (only a
        button update can answer a click passively), goes out actively later.
        """
        work = asyncio.create_task(self._answers.answer(app_name, app, message))
        done, _ = await asyncio.wait({work}, timeout=app.callback_reply_budget.total_seconds())
        if not done:
            self._track(self._deliver_later(app_name, app, message, work))
            if _is_card_click(message):
                return ""
            answer = Answer(self._answers.working())
        else:
            answer = _result(work, app_name)
        create_time = int(self._epoch())
        if _is_card_click(message):
            if answer.button_label:
                self._track(self._active.update_others(app_name, app, message, answer.button_label))
                return button_reply(message.from_user, app.corp_id, answer.button_label, create_time)
            if answer.text:
                self._track(self._active.deliver(app_name, app, message, answer))
            return ""
        if answer.text:
            return text_reply(message.from_user, app.corp_id, answer.text, create_time)
        return ""

    async def _deliver_later(
        self, app_name: str, app: WeComAppConfig, message: InboundMessage, work: asyncio.Task[Answer]
    ) -> None:
        await asyncio.wait({work})
        await self._active.deliver(app_name, app, message, _result(work, app_name))

    async def _saved_reply(self, key: str, app: WeComAppConfig) -> str:
        """The reply saved for ``key`` by the request that claimed it, waiting
        for it while that request may still be within its budget."""
        deadline = self._epoch() + app.callback_reply_budget.total_seconds() + _SAVE_GRACE
        while True:
            try:
                reply = await self._state.callback_reply(key, self._clock())
            except StoreError as exc:
                log.warning("callback_reply_unreadable error=%s", exc)
                return ""
            if reply is not None or self._epoch() >= deadline:
                return reply or ""
            await asyncio.sleep(_POLL)

    def _sealed(self, crypto: CallbackCrypto, reply: str, timestamp: str) -> Response:
        if not reply:
            return Response(b"", media_type="text/plain")
        nonce = str(secrets.randbelow(10**10))
        return Response(crypto.seal_reply(reply.encode("utf-8"), timestamp, nonce), media_type="text/xml")

    def _track(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(work: Coroutine[object, object, None]) -> None:
        # The background-task boundary: log anything unexpected, never crash the loop.
        try:
            await work
        except Exception:
            log.exception("callback_task_failed")

    @property
    def busy(self) -> bool:
        """Still acting on a command (see ``drain``)."""
        return bool(self._tasks)

    async def drain(self) -> None:
        """Wait for running command tasks (at shutdown), so none is cut in half."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _is_card_click(message: InboundMessage) -> TypeGuard[EventMessage]:
    return isinstance(message, EventMessage) and message.event == "template_card_event"


def _result(work: asyncio.Task[Answer], app_name: str) -> Answer:
    """A finished answer task's answer; a crash is logged and says nothing."""
    try:
        return work.result()
    except Exception:
        log.exception("callback_task_failed app=%s", app_name)
        return NOTHING


def _snake(name: str) -> str:
    """``SignatureMismatch`` → ``signature_mismatch``: a callback error class as a metrics label."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
