"""The one way tests build a validated Config from sections, as the TOML
loader would: a store under the test's directory plus whatever sections the
test needs."""

from __future__ import annotations

from pathlib import Path

from alertbridge.config import Config, parse_config


def build_config(db: Path, source: str = "test.toml", **sections: dict[str, object]) -> Config:
    """The Config of ``sections`` with its SQLite store at ``db``.

    A ``store`` section adds to (or overrides) the URL; ``source`` is the file
    name error messages cite.
    """
    store = {"url": f"sqlite:///{db}", **sections.pop("store", {})}
    return parse_config({"store": store, **sections}, {}, source)
