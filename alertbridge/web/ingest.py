"""``POST /alertmanager/{receiver}``: validate, commit to the outbox, answer.

The answer follows Alertmanager's retry contract: it retries 5xx only, so
200 is sent strictly after the delivery is committed, 4xx for anything a
retry cannot fix, and 503 when the store cannot commit. This handler never
talks to WeCom; the dispatcher does, after we answered.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from alertbridge.config import AppReceiver, Config, ReceiverConfig
from alertbridge.errors import PayloadError, StoreError
from alertbridge.message import Recipients
from alertbridge.sources import alertmanager
from alertbridge.stores import NewDelivery, OutboxStore
from alertbridge.web.auth import WebhookAuthenticator

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "text/json")


class BodyTooLarge(Exception):
    pass


def error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"status": "error", "error": reason}, status_code=status)


class WebhookIngest:
    """The webhook endpoints; one instance per app, holding its collaborators."""

    def __init__(
        self,
        config: Config,
        store: OutboxStore,
        auth: WebhookAuthenticator,
        on_enqueued: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._store = store
        self._auth = auth
        self._on_enqueued = on_enqueued
        self._clock = clock

    async def alertmanager(self, request: Request) -> JSONResponse:
        request_id = uuid.uuid4().hex[:16]
        name = request.path_params["receiver"]
        if not self._auth.allows(request.headers.get("authorization")):
            return error(401, "missing or invalid credentials (see [webhook_auth])")
        receiver = self._config.receivers.get(name)
        if receiver is None:
            return error(404, f"no receiver named {name!r} is configured")
        content_type = request.headers.get("content-type", "application/json")
        if content_type.split(";")[0].strip().lower() not in _JSON_TYPES:
            return error(415, f"expected Content-Type: application/json, got {content_type[:60]!r}")
        try:
            body = await _read_body(request, self._config.server.max_body_bytes)
        except BodyTooLarge:
            limit = self._config.server.max_body_bytes
            return error(413, f"body larger than server.max_body_bytes ({limit} bytes)")
        except ClientDisconnect:
            return error(400, "client disconnected before the body was complete")
        try:
            group = alertmanager.parse(body)
        except PayloadError as exc:
            log.info("webhook_rejected receiver=%s request_id=%s reason=%s", name, request_id, exc.problem)
            return error(400, str(exc))

        if not receiver.send_resolved:
            kept = group.firing
            if not kept:
                return JSONResponse({"status": "dropped", "reason": "resolved and send_resolved = false"})
            group = group.with_alerts(kept)

        delivery = NewDelivery(
            receiver=name,
            channel=receiver.channel,
            recipients=recipients_of(receiver),
            group=group,
            request_id=request_id,
            accepted_at=self._clock(),
        )
        try:
            delivery_id = await self._store.enqueue(delivery)
        except StoreError as exc:
            log.error("webhook_not_stored receiver=%s request_id=%s error=%s", name, request_id, exc)
            return error(503, "store unavailable; not accepted, please retry")
        self._on_enqueued()
        log.info(
            "webhook_accepted receiver=%s request_id=%s delivery=%d alerts=%d status=%s",
            name,
            request_id,
            delivery_id,
            len(group.alerts),
            group.status.value,
        )
        return JSONResponse({"status": "accepted", "request_id": request_id, "delivery": delivery_id})


def recipients_of(receiver: ReceiverConfig) -> Recipients:
    if isinstance(receiver, AppReceiver):
        return Recipients(tuple(receiver.to_user), tuple(receiver.to_party), tuple(receiver.to_tag))
    return Recipients()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
