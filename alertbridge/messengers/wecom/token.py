"""A per-app access_token cache: single-flight, refreshed ahead of expiry.

WeCom rate-limits ``gettoken`` (and blocks an IP for an hour after many bad
secrets), so a burst of sends must not turn into a burst of token requests:
one refresh runs at a time and everyone waiting reuses its outcome, success
or failure. The token is refreshed a margin before ``expires_in`` runs out so
that a send never races the expiry; WeCom may still revoke a token early,
which is what ``invalidate`` is for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alertbridge.errors import DeliveryError

Clock = Callable[[], float]

# Refresh this long before the token expires: at least a minute, or a tenth of
# its lifetime (12 min for WeCom's usual 7200 s) ...
_MIN_MARGIN = 60.0
_MARGIN_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What a fetch returns: the token and its lifetime in seconds (``expires_in``)."""

    value: str
    expires_in: float


def refresh_margin(expires_in: float) -> float:
    """How long before expiry to refresh a token that lives ``expires_in`` seconds."""
    margin = max(_MIN_MARGIN, _MARGIN_FRACTION * expires_in)
    # ... but never more than half its life, or a short-lived token would be
    # refreshed on every use.
    return min(margin, expires_in / 2)


class AccessTokenCache:
    """The current access_token of one app.

    ``fetch`` performs one ``gettoken`` call and raises a ``DeliveryError`` on
    failure. Time comes from ``clock`` (monotonic seconds) so tests can move it.
    """

    def __init__(self, fetch: Callable[[], Awaitable[IssuedToken]], *, clock: Clock = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        # Counts finished fetches, so a caller queued on the lock can tell that
        # a fetch ended (and failed) while it waited: it then shares that
        # failure instead of calling gettoken again.
        self._finished = 0
        self._last_error: DeliveryError | None = None
        self.fetches = 0

    def __repr__(self) -> str:
        # Never show the token itself.
        state = "fresh" if self._fresh() is not None else "empty"
        return f"<AccessTokenCache {state} fetches={self.fetches}>"

    async def get(self) -> str:
        """The current token, fetching a new one if there is none or it is about to expire.

        Raises:
            DeliveryError: the fetch failed (for every caller waiting on it).
        """
        token = self._fresh()
        if token is not None:
            return token
        finished_seen = self._finished
        async with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            if self._finished != finished_seen and self._last_error is not None:
                raise self._last_error
            self.fetches += 1
            try:
                issued = await self._fetch()
            except DeliveryError as exc:
                self._last_error = exc
                raise
            finally:
                self._finished += 1
            self._last_error = None
            self._token = issued.value
            self._refresh_at = self._clock() + issued.expires_in - refresh_margin(issued.expires_in)
            return issued.value

    def invalidate(self, token: str) -> None:
        """Forget ``token`` because WeCom rejected it.

        Only the current token is dropped: when many sends fail with the same
        old token, the first one's refresh must not be thrown away by the rest.
        """
        if self._token == token:
            self._token = None

    def _fresh(self) -> str | None:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        return None
