"""What one batch of deliveries is worked with.

The dispatcher's config, renderer and tracker change on a reload; a batch
takes a snapshot of them when it starts, so the parts of one delivery are
never rendered, limited and retried under two different configs. The
pieces of the delivery core (compose, send, digest, outcome) share it
instead of each holding its own copy of the same dozen references.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from alertbridge.config import Config
from alertbridge.delivery.budget import SendBudget
from alertbridge.delivery.tracking import GroupTracker
from alertbridge.messengers import Messengers
from alertbridge.metrics import Metrics
from alertbridge.render import Renderer
from alertbridge.stores import OutboxStore


@dataclass(frozen=True, slots=True)
class BatchContext:
    config: Config
    store: OutboxStore
    budget: SendBudget
    metrics: Metrics
    renderer: Renderer
    tracker: GroupTracker
    messengers: Messengers  # the tracker's: of the same config
    clock: Callable[[], datetime]
    rand: Callable[[], float]
