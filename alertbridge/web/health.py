"""``/healthz`` (the process answers), ``/readyz`` (it can do its job) and ``/metrics``.

Kubernetes restarts a pod whose liveness fails and stops routing to one whose
readiness fails, so the two differ on purpose: ``/healthz`` answers as long as
the event loop does; ``/readyz`` also proves that the store takes a write and
that the dispatcher's loop went round recently, so a wedged dispatcher or a
read-only volume takes the pod out of service instead of hiding behind 200s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from alertbridge.errors import StoreError
from alertbridge.metrics import CONTENT_TYPE, Metrics
from alertbridge.stores import DeliveryStatus, OutboxStore, PoolUsage

log = logging.getLogger(__name__)

# The dispatcher loop goes round at least every second when idle; a claim
# can wait on the store's busy timeout (5 s). Longer than this is stuck.
HEARTBEAT_MAX_AGE = timedelta(seconds=30)


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


class OperationalEndpoints:
    """``/readyz`` and ``/metrics``: both read the outbox and the dispatcher's heartbeat."""

    def __init__(
        self,
        *,
        store: OutboxStore,
        metrics: Metrics,
        dispatcher_heartbeat: Callable[[], datetime | None],
        pool_usage: Callable[[], PoolUsage | None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``pool_usage``: the store's connection pool now (``Stores.pool_usage``)."""
        self._store = store
        self._pool_usage = pool_usage
        self._metrics = metrics
        self._heartbeat = dispatcher_heartbeat
        self._clock = clock

    async def readyz(self, request: Request) -> PlainTextResponse:
        problems: list[str] = []
        now = self._clock()
        beat = self._heartbeat()
        if beat is None or now - beat > HEARTBEAT_MAX_AGE:
            problems.append("dispatcher not running")
        try:
            await self._store.probe(now)
        except StoreError as exc:
            problems.append(f"store not writable: {exc}")
        if problems:
            return PlainTextResponse("\n".join(problems) + "\n", status_code=503)
        return PlainTextResponse("ok\n")

    async def metrics(self, request: Request) -> Response:
        # Read before the queries below borrow a connection: the replica's own load.
        usage = self._pool_usage()
        if usage is not None:
            self._metrics.observe_pool(usage.in_use, usage.idle)
        try:
            pending = await self._store.count(DeliveryStatus.PENDING)
            dead = await self._store.count(DeliveryStatus.DEAD)
            oldest = await self._store.oldest_pending()
        except StoreError as exc:
            # The gauges keep their last reading; every other metric still matters.
            log.warning("metrics_outbox_unreadable error=%s", exc)
        else:
            self._metrics.observe_outbox(pending, dead, oldest, self._clock())
        return Response(self._metrics.exposition(), media_type=CONTENT_TYPE)
