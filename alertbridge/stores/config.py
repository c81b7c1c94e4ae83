"""The ``[store]`` section: where alertbridge keeps its outbox and state.

``sqlite:///PATH`` (one process, the default) or
``postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE`` (several replicas on one
database). The URL may hold the password, so no message repeats it and its
password is listed for log redaction (``url_secrets``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from alertbridge.config_base import Section, duration_value

_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


class StoreConfig(Section):
    # sqlite:///PATH (one replica, the default) or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE
    # (several replicas on one database); ${VAR} works inside, for the password.
    url: str = "sqlite:///./data/alertbridge.db"
    # Sent deliveries are pruned after this long; dead letters are kept.
    retention: timedelta = timedelta(days=7)
    # PostgreSQL: connections per replica.
    pool_size: int = Field(default=10, ge=1, le=1000)

    _parse_retention = field_validator("retention", mode="before")(duration_value)

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
    def sqlite_path(self) -> Path:
        """Relative paths are relative to the working directory."""
        return Path(self.url.removeprefix("sqlite:///"))
