"""What every contract test builds on: a fixed instant ``T0``, ``opened`` stores, and
alert groups, deliveries and silences made to order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from alertbridge.message import Recipients
from alertbridge.model import Alert, AlertGroup, Status
from alertbridge.stores import NewDelivery, Stores
from alertbridge.stores.state import SilenceRecord

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


class MakeStores(Protocol):
    """Builds a new, unopened ``Stores`` on the test's one backing store."""

    def __call__(self) -> Stores: ...


class _Openable(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


_S = TypeVar("_S", bound=_Openable)


@asynccontextmanager
async def opened(store: _S) -> AsyncIterator[_S]:
    """``store``, open for the block and closed after it."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- values the outbox tests store ------------------------------------------------


def make_group(name: str = "HighCPU", *, note: str = "CPU 使用率过高", alerts: int = 2) -> AlertGroup:
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING,
        group_key='{}:{alertname="' + name + '"}',
        alerts=tuple(
            Alert(
                status=Status.FIRING if i % 2 == 0 else Status.RESOLVED,
                labels={"alertname": name, "instance": f"node-{i}", "severity": "critical"},
                annotations={"summary": note},
                starts_at=T0 - timedelta(minutes=5 + i),
                ends_at=None if i % 2 == 0 else T0 - timedelta(minutes=1),
                fingerprint=f"fp{i:04d}",
                generator_url=f"http://prom/graph?g0.expr=up{i}",
            )
            for i in range(alerts)
        ),
        group_labels={"alertname": name},
        common_labels={"alertname": name, "severity": "critical"},
        common_annotations={},
        external_url="http://alertmanager:9093",
        source_receiver="wecom-ops",
        truncated_alerts=3,
    )


def make_delivery(
    accepted_at: datetime = T0, *, request_id: str = "req-1", group: AlertGroup | None = None
) -> NewDelivery:
    return NewDelivery(
        receiver="ops",
        channel="app",
        recipients=Recipients(to_user=("zhangsan", "lisi"), to_party=("2",), to_tag=()),
        group=group or make_group(),
        request_id=request_id,
        accepted_at=accepted_at,
    )


# -- values the state tests store ---------------------------------------------------


OPS = Recipients(to_user=("zhangsan", "lisi"), to_party=("2",))


def make_ref_group(
    name: str = "HighCPU",
    *,
    firing: Iterable[str] = ("fp-a",),
    resolved: Iterable[str] = (),
    key: str | None = None,
    group_labels: dict[str, str] | None = None,
    common_alertname: bool = True,
) -> AlertGroup:
    """A group whose alerts are ``firing`` and ``resolved`` fingerprints."""
    alerts = tuple(
        Alert(
            status=status,
            labels={"alertname": name, "instance": fp, "severity": "critical"},
            annotations={"summary": "CPU 使用率过高"},
            starts_at=T0 - timedelta(minutes=5),
            ends_at=None if status is Status.FIRING else T0,
            fingerprint=fp,
        )
        for fps, status in ((firing, Status.FIRING), (resolved, Status.RESOLVED))
        for fp in fps
    )
    return AlertGroup(
        source="alertmanager",
        status=Status.FIRING if any(a.status is Status.FIRING for a in alerts) else Status.RESOLVED,
        group_key=key if key is not None else '{}:{alertname="' + name + '"}',
        alerts=alerts,
        group_labels={"alertname": name} if group_labels is None else group_labels,
        common_labels={"alertname": name, "severity": "critical"} if common_alertname else {},
        external_url="http://alertmanager:9093",
        source_receiver="wecom-ops",
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def silence(silence_id: str, *, ref: int | None = 1, ends: float = 120, created: float = 0) -> SilenceRecord:
    return SilenceRecord(
        silence_id=silence_id,
        silencer="alertmanager",
        ref=ref,
        created_by="zhangsan",
        ends_at=at(ends),
        matchers='alertname="HighCPU", instance=~"a|b"',
        created_at=at(created),
    )
