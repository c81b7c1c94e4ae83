"""WeCom's contact directory: a user's departments and a tag's members, cached.

``allow_ack`` / ``allow_silence`` entries ``party:<id>`` and ``tag:<id>``
(``alertbridge.commands.authz``) are resolved here through the WeCom app
the command came through.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from alertbridge.commands.authz import ContactUnavailable
from alertbridge.config import Config
from alertbridge.errors import DeliveryError
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.contact_calls import TagMembers
from alertbridge.messengers.wecom.errcodes import CONTACT_PERMISSION_DENIED
from alertbridge.messengers.wecom.errors import WeComAPIError

CONTACT_CACHE_TTL = timedelta(minutes=10)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Cached(Generic[_T]):
    expires_at: float
    value: _T | ContactUnavailable


class ContactDirectory:
    """Departments of a user and members of a tag, from WeCom, cached for ``ttl``.

    One per process (its cache outlives config reloads). A denial (48002,
    60011) is cached like an answer: asking again within minutes would get the
    same one. A transient failure is not cached.
    """

    def __init__(
        self,
        client: WeComClient | None,
        *,
        ttl: timedelta = CONTACT_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self._departments: dict[tuple[str, int, str], _Cached[frozenset[str]]] = {}
        self._tags: dict[tuple[str, int, str], _Cached[TagMembers]] = {}

    async def departments(self, config: Config, app_name: str, user: str) -> frozenset[str]:
        """The user's department ids. Raises ``ContactUnavailable``."""
        app = self._app(config, app_name)
        client = self._require_client()
        folded = user.casefold()
        return await self._cached(
            self._departments,
            (app.corp_id, app.agent_id, folded),
            lambda: client.user_departments(app_name, app, folded),
        )

    async def tag(self, config: Config, app_name: str, tag_id: str) -> TagMembers:
        """The tag's users and departments. Raises ``ContactUnavailable``."""
        app = self._app(config, app_name)
        client = self._require_client()
        return await self._cached(
            self._tags, (app.corp_id, app.agent_id, tag_id), lambda: client.tag_members(app_name, app, tag_id)
        )

    @staticmethod
    def _app(config: Config, app_name: str) -> WeComAppConfig:
        app = config.wecom.apps.get(app_name)
        if app is None:
            raise ContactUnavailable("no_wecom_app")
        return app

    def _require_client(self) -> WeComClient:
        if self._client is None:
            raise ContactUnavailable("no_wecom_client")
        return self._client

    async def _cached(
        self,
        cache: dict[tuple[str, int, str], _Cached[_T]],
        key: tuple[str, int, str],
        fetch: Callable[[], Awaitable[_T]],
    ) -> _T:
        now = self._clock()
        cached = cache.get(key)
        if cached is None or cached.expires_at <= now:
            try:
                value: _T | ContactUnavailable = await fetch()
            except WeComAPIError as exc:
                if exc.errcode not in CONTACT_PERMISSION_DENIED:
                    raise ContactUnavailable(f"errcode_{exc.errcode}") from None
                value = ContactUnavailable(f"errcode_{exc.errcode}_{exc.reason}")
            except DeliveryError as exc:
                raise ContactUnavailable(exc.reason) from None
            cached = _Cached(now + self._ttl, value)
            cache[key] = cached
        if isinstance(cached.value, ContactUnavailable):
            raise cached.value
        return cached.value
