"""The suite every store must pass: the promises of ``OutboxStore`` and ``StateStore``.

A backend's test module subclasses ``OutboxContract`` and ``StateContract``
(their names must start with ``Test`` for pytest to collect them) and
provides one fixture, ``make_stores``: a callable that builds a fresh,
unopened ``Stores`` on the same backing store (file, database) every time it
is called within a test, so a test can open a second store beside the first,
or reopen after closing. See tests/test_store_contract.py for SQLite.

What is specific to one backend (files, fsync, migrations from older schema
versions, disk full, locks) stays in that backend's own tests.
"""

from __future__ import annotations

from alertbridge.testing.store_contract.helpers import (
    _S,
    OPS,
    T0,
    MakeStores,
    _Openable,
    at,
    make_delivery,
    make_group,
    make_ref_group,
    opened,
    silence,
)
from alertbridge.testing.store_contract.outbox import OutboxContract
from alertbridge.testing.store_contract.state import StateContract

__all__ = [
    "OPS",
    "T0",
    "_S",
    "MakeStores",
    "OutboxContract",
    "StateContract",
    "_Openable",
    "at",
    "make_delivery",
    "make_group",
    "make_ref_group",
    "opened",
    "silence",
]
