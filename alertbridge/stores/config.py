"""The ``[store]`` section: where alertbridge keeps its outbox and state.

``sqlite:///PATH`` (one process, the default) or
``postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE`` (several replicas on one
database). The URL may hold the password, so no message repeats it and its
password is listed for log redaction (``url_secrets``).
"""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from alertbridge.config_base import Section, duration_value

_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
# [store] lease: its bounds and the backends' defaults.
MIN_LEASE: Final = timedelta(seconds=15)
POSTGRES_LEASE: Final = timedelta(seconds=30)
SQLITE_LEASE: Final = timedelta(minutes=10)
# [store] replica: a host or pod name (a DNS subdomain: at most 253 characters).
_REPLICA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")


class StoreConfig(Section):
    # sqlite:///PATH (one replica, the default) or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE
    # (several replicas on one database); ${VAR} works inside, for the password.
    url: str = "sqlite:///./data/alertbridge.db"
    # Sent deliveries are pruned after this long; dead letters are kept.
    retention: timedelta = timedelta(days=7)
    # PostgreSQL: connections per replica.
    pool_size: int = Field(default=10, ge=1, le=1000)
    # How long a replica owns the deliveries it claimed before another may take
    # them over (the owner was killed or stalled). Unset: the backend's
    # default (see ``lease_for_claims``). PostgreSQL renews the leases of work
    # still in hand every third of this, so a long send or a queue behind a
    # slow WeCom never outlives it; the floor leaves a renewal room for a slow
    # statement (the database timeout is 10 s).
    lease: Annotated[timedelta, Field(ge=MIN_LEASE, le=timedelta(hours=1))] | None = None
    # This replica's name in its PostgreSQL leases: unique among the running
    # replicas (two with one name would take each other's leases for their
    # own), kept across a restart (its successor takes its leases over at
    # once). The host name by default; in Kubernetes the pod name
    # (``replica = "${POD_NAME}"``, which the Helm chart sets), since two
    # processes on one host share a host name.
    replica: str = Field(default_factory=socket.gethostname)

    _parse_durations = field_validator("retention", "lease", mode="before")(duration_value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        # Messages never repeat the URL: it may hold the password.
        if value.startswith(_POSTGRES_SCHEMES):
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError:
                raise ValueError("not a valid postgresql:// URL") from None
            if not parts.hostname:
                raise ValueError("postgresql:// needs a host: postgresql://USER:PASSWORD@HOST/DATABASE")
            if not parts.path.strip("/"):
                raise ValueError("postgresql:// needs a database: postgresql://USER:PASSWORD@HOST/DATABASE")
            return value
        if not value.startswith("sqlite:///"):
            raise ValueError(
                "only sqlite:///PATH is supported, or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
            )
        if value == "sqlite:///":
            raise ValueError("sqlite:/// needs a file path")
        return value

    @field_validator("replica")
    @classmethod
    def _check_replica(cls, value: str) -> str:
        if not _REPLICA.match(value):
            raise ValueError(
                "must be a host or pod name: letters, digits, '_', '.', '-' (at most 253, "
                "starting with a letter or digit)"
            )
        return value

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(_POSTGRES_SCHEMES)

    def url_secrets(self) -> list[str]:
        """The password in a postgresql:// URL, as written and decoded, for log redaction."""
        if not self.is_postgres:
            return []
        raw = urlsplit(self.url).netloc.rpartition("@")[0].partition(":")[2]
        return [s for s in dict.fromkeys((raw, unquote(raw))) if s]

    @property
    def lease_for_claims(self) -> timedelta:
        """``lease``, or the backend's default: 30 s on PostgreSQL (a dead replica's
        work moves on quickly); 10 min on SQLite, where one process is the only
        claimer and a restart frees its own leases at once."""
        if self.lease is not None:
            return self.lease
        return POSTGRES_LEASE if self.is_postgres else SQLITE_LEASE

    @property
    def sqlite_path(self) -> Path:
        """Relative paths are relative to the working directory."""
        return Path(self.url.removeprefix("sqlite:///"))
