"""A silencer that counts the silences it creates and expires, for /metrics.

Wrapping each configured silencer once (in ``build_silencers``) counts every
silence, whether a reply, a card button or ack upkeep made it, in one place.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from alertbridge.metrics import Metrics
from alertbridge.silencers import Matcher, Silence, Silencer, SilenceRequest


class CountedSilencer:
    def __init__(self, inner: Silencer, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics
        self.name = inner.name
        self.kind = inner.kind

    async def create(self, request: SilenceRequest) -> str:
        silence_id = await self.inner.create(request)
        self._metrics.silences_created.labels(self.name).inc()
        return silence_id

    async def update(self, silence_id: str, request: SilenceRequest) -> str:
        return await self.inner.update(silence_id, request)

    async def expire(self, silence_id: str) -> bool:
        expired = await self.inner.expire(silence_id)
        if expired:
            self._metrics.silences_expired.labels(self.name).inc()
        return expired

    async def get(self, silence_id: str) -> Silence | None:
        return await self.inner.get(silence_id)

    async def list(self) -> builtins.list[Silence]:
        return await self.inner.list()

    async def firing_alerts(
        self, matchers: Sequence[Matcher], *, silenced: bool = True, inhibited: bool = True
    ) -> builtins.list[dict[str, Any]]:
        return await self.inner.firing_alerts(matchers, silenced=silenced, inhibited=inhibited)

    def silence_url(self, silence_id: str) -> str:
        return self.inner.silence_url(silence_id)
