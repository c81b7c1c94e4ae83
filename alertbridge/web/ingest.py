"""``POST /alertmanager/{receiver}`` and ``POST|PUT /grafana/{receiver}``: validate, commit, answer.

Both endpoints run one code path and differ only in their parser and in the
Grafana endpoint's optional HMAC check. The answer follows the senders'
retry contract: Alertmanager retries 5xx only, Grafana tries a failed
notification again at its next flush; so 200 is sent strictly after the
delivery is committed, 4xx for anything a retry cannot fix, and 503 when the
store cannot commit. This handler never talks to WeCom; the dispatcher does,
after we answered.

Order of checks: credentials ([webhook_auth], 401) before the receiver name
(404), so names do not leak; then content type (415), body size (413), the
receiver's Grafana signature (401), the payload (400). A receiver with a
Grafana secret refuses the unsigned Alertmanager endpoint outright (401).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from alertbridge.config import Config
from alertbridge.delivery.priority import WebhookLoad
from alertbridge.errors import PayloadError, StoreError
from alertbridge.metrics import Metrics
from alertbridge.model import AlertGroup
from alertbridge.sources import alertmanager, grafana
from alertbridge.sources.grafana_signature import SignatureError, verify_signature
from alertbridge.stores import NewDelivery, OutboxStore
from alertbridge.web.auth import WebhookAuthenticator
from alertbridge.web.body import BodyTooLarge, header, read_body
from alertbridge.web.refusals import RefusalLog

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "text/json")


@dataclass(frozen=True, slots=True)
class _Source:
    """What differs between the webhook endpoints."""

    name: str
    # (body, received_at) -> group; raises PayloadError.
    parse: Callable[[bytes, datetime], AlertGroup]
    # Check the receiver's grafana_hmac_secret, when it has one.
    signed: bool


_ALERTMANAGER = _Source("alertmanager", lambda body, _: alertmanager.parse(body), signed=False)
_GRAFANA = _Source("grafana", lambda body, now: grafana.parse(body, received_at=now), signed=True)


@dataclass(frozen=True, slots=True)
class _Answer:
    """One webhook's answer, its outcome for /metrics, and whether the caller proved who it is."""

    outcome: str
    response: Response
    authenticated: bool = False
    # Why the webhook was refused (a 4xx), for the log; None when it was not.
    refusal: str | None = None


def _refuse(outcome: str, status: int, reason: str, authenticated: bool = False) -> _Answer:
    """A 4xx answer whose reason is also logged (see ``RefusalLog``)."""
    return _Answer(outcome, error(status, reason), authenticated, refusal=reason)


def error(status: int, reason: str) -> Response:
    return json_answer({"status": "error", "error": reason}, status)


def json_answer(
    content: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer: the same compact UTF-8 text as Starlette's ``JSONResponse``,
    written by orjson (a few microseconds less on every webhook, Phase 10)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


class WebhookIngest:
    """The webhook endpoints; one instance per app, holding its collaborators."""

    def __init__(
        self,
        config: Config,
        store: OutboxStore,
        auth: WebhookAuthenticator,
        on_enqueued: Callable[[], None],
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refusals: RefusalLog | None = None,
        load: WebhookLoad | None = None,
    ) -> None:
        self._config = config
        # Shared with the dispatcher, which gives way while webhooks are in flight.
        self._load = load if load is not None else WebhookLoad()
        # Shared across reloads by the app, so a reload does not reset the rate limit.
        self._refusals = refusals if refusals is not None else RefusalLog()
        self._metrics = metrics if metrics is not None else Metrics()
        self._store = store
        self._auth = auth
        self._on_enqueued = on_enqueued
        self._clock = clock
        # The webhook counter's children by (source, receiver, outcome): a few
        # dozen at most (configured receivers only), looked up once each.
        self._counted: dict[tuple[str, str, str], Counter] = {}

    async def alertmanager(self, request: Request) -> Response:
        return await self._ingest(request, _ALERTMANAGER)

    async def grafana(self, request: Request) -> Response:
        return await self._ingest(request, _GRAFANA)

    def _count(self, source: str, receiver: str, outcome: str) -> None:
        key = (source, receiver, outcome)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self._metrics.webhooks.labels(source, receiver, outcome)
        child.inc()

    async def _ingest(self, request: Request, source: _Source) -> Response:
        name = request.path_params["receiver"]
        with self._load.accepting():
            answer = await self._accept(request, source, name)
        # A name from the URL is a label only when configured (clients cannot grow
        # the series) and only once the caller proved who it is: /metrics must not
        # tell an unauthenticated poster which receiver names exist.
        receiver = name if answer.authenticated and name in self._config.receivers else ""
        self._count(source.name, receiver, answer.outcome)
        if answer.refusal is not None:
            self._refusals.refused(
                source=source.name,
                receiver=name,
                remote=request.client.host if request.client is not None else "unknown",
                status=answer.response.status_code,
                outcome=answer.outcome,
                reason=answer.refusal,
            )
        return answer.response

    async def _accept(self, request: Request, source: _Source, name: str) -> _Answer:
        """The answer to one webhook, its outcome for /metrics and whether the caller authenticated."""
        # 64 random bits as 16 hex digits, as a uuid4's first half was. An id to
        # follow a webhook by, not a secret: no getrandom syscall per request.
        request_id = f"{random.getrandbits(64):016x}"
        if not self._auth.allows(header(request, b"authorization")):
            return _refuse("unauthorized", 401, "missing or invalid credentials (see [webhook_auth])")
        receiver = self._config.receivers.get(name)
        if receiver is None:
            return _refuse("unknown_receiver", 404, f"no receiver named {name!r} is configured")
        if receiver.grafana_hmac_secret is not None and not source.signed:
            # Otherwise the signature would be optional: the same receiver, unsigned, one URL over.
            return _refuse(
                "bad_signature",
                401,
                f"receiver {name!r} has a grafana_hmac_secret and takes only signed posts to /grafana/{name}",
            )
        secret = receiver.grafana_hmac_secret if source.signed else None
        # [webhook_auth] (when set) has passed; a signed receiver also needs its signature.
        # Without any credentials configured there is nothing to prove (and 404 tells names anyway).
        authenticated = secret is None
        content_type = header(request, b"content-type")
        if content_type is None:
            content_type = "application/json"
        if content_type.split(";")[0].strip().lower() not in _JSON_TYPES:
            return _refuse(
                "unsupported_media_type",
                415,
                f"expected Content-Type: application/json, got {content_type[:60]!r}",
                authenticated,
            )
        try:
            body = await read_body(request, self._config.server.max_body_bytes)
        except BodyTooLarge as exc:
            return _refuse(
                "too_large", 413, f"body larger than server.max_body_bytes ({exc.limit} bytes)", authenticated
            )
        except ClientDisconnect:
            return _refuse(
                "incomplete", 400, "client disconnected before the body was complete", authenticated
            )
        now = self._clock()
        if secret is not None:
            try:
                verify_signature(secret.get_secret_value(), body, request.headers, now.timestamp())
            except SignatureError as exc:
                return _refuse("bad_signature", 401, f"{exc} (see receivers.{name}.grafana_hmac_secret)")
            authenticated = True
        try:
            group = source.parse(body, now)
        except PayloadError as exc:
            return _refuse("bad_payload", 400, str(exc), authenticated)

        if not receiver.send_resolved:
            kept = group.firing
            if not kept:
                return _Answer(
                    "dropped",
                    json_answer({"status": "dropped", "reason": "resolved and send_resolved = false"}),
                    authenticated,
                )
            group = group.with_alerts(kept)

        delivery = NewDelivery(
            receiver=name,
            channel=receiver.channel,
            recipients=receiver.recipients_for(group),
            group=group,
            request_id=request_id,
            accepted_at=now,
            dedup_key=group.notification_key(),
        )
        try:
            delivery_id = await self._store.enqueue(delivery)
        except StoreError as exc:
            log.error("webhook_not_stored receiver=%s request_id=%s error=%s", name, request_id, exc)
            return _Answer(
                "store_unavailable",
                error(503, "store unavailable; not accepted, please retry"),
                authenticated,
            )
        # An HA peer's copy (or a retry) of a notification already stored is said to be
        # one, with the delivery that carries it, so nobody looks for a second message.
        status = "duplicate" if delivery_id.duplicate else "accepted"
        event = "webhook_duplicate" if delivery_id.duplicate else "webhook_accepted"
        if not delivery_id.duplicate:
            self._on_enqueued()
        log.info(
            "%s source=%s receiver=%s request_id=%s delivery=%d alerts=%d status=%s",
            event,
            source.name,
            name,
            request_id,
            delivery_id,
            len(group.alerts),
            group.status.value,
        )
        return _Answer(
            status,
            json_answer(
                {"status": status, "request_id": request_id, "delivery": delivery_id},
                headers={"X-Request-Id": request_id},
            ),
            authenticated,
        )
