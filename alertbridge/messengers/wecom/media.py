"""A cache of uploaded WeCom media ids, by who may use them, type and content hash.

A temporary media id from ``media/upload`` is valid for 3 days and can be
used by every app of the corp that uploaded it (docs/wecom-api.md §7); one
from a robot's ``webhook/upload_media`` by that robot only (§5). So the same
content — a Grafana panel re-sent with every re-notification, a report sent
to several receivers — is uploaded once per corp (or robot) and type. Entries are used for ``max_age``
(2.5 days by default) only, leaving half a day of margin before WeCom forgets
the id; a send that WeCom still answers with 40007 (invalid media id) should
``forget`` the entry and upload again.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

from alertbridge.messengers.wecom.media_rules import MediaKind
from alertbridge.messengers.wecom.token import Clock
from alertbridge.metrics import Metrics

MEDIA_LIFETIME = 3 * 24 * 3600.0
DEFAULT_MAX_AGE = 2.5 * 24 * 3600.0
DEFAULT_MAX_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class _Entry:
    media_id: str
    uploaded_at: float


class MediaCache:
    """Media ids keyed by (scope, type, content sha256); least recently stored entries go first.

    ``scope`` is who may use the id: the corp id for app uploads, the
    robot's ``robot_scope`` for a robot's. ``clock`` is monotonic seconds (the client's clock, so tests can advance it).
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        max_age: float = DEFAULT_MAX_AGE,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        metrics: Metrics | None = None,
    ) -> None:
        if not 0 < max_age < MEDIA_LIFETIME:
            raise ValueError("max_age must be positive and below WeCom's 3-day media lifetime")
        self._clock = clock
        self._max_age = max_age
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, MediaKind, str], _Entry] = OrderedDict()
        self._metrics = metrics if metrics is not None else Metrics()
        self.hits = 0
        self.misses = 0

    def get(self, scope: str, kind: MediaKind, sha256: str) -> str | None:
        """The cached media id, or None when there is none young enough."""
        key = (scope, kind, sha256)
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.uploaded_at < self._max_age:
            self.hits += 1
            self._metrics.media_cache.labels("hit").inc()
            return entry.media_id
        if entry is not None:
            del self._entries[key]
        self.misses += 1
        self._metrics.media_cache.labels("miss").inc()
        return None

    def put(self, scope: str, kind: MediaKind, sha256: str, media_id: str) -> None:
        key = (scope, kind, sha256)
        self._entries.pop(key, None)
        self._entries[key] = _Entry(media_id, self._clock())
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, scope: str, kind: MediaKind, sha256: str, media_id: str | None = None) -> None:
        """Drop the entry (only if it still holds ``media_id``, when given)."""
        key = (scope, kind, sha256)
        entry = self._entries.get(key)
        if entry is not None and (media_id is None or entry.media_id == media_id):
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def robot_scope(key: str) -> str:
    """The cache scope of one robot's uploads: a digest, so the key never sits in memory twice."""
    return "robot:" + hashlib.sha256(key.encode()).hexdigest()
