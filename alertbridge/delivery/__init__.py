"""The delivery core: from the outbox to the messenger, within its send limits.

``loop`` claims due deliveries and runs one worker per target; ``send``
composes (``compose``) and sends a notification part by part through the one
budgeted send path; ``digest`` merges a backlog that does not fit the budget
into stored digests; ``budget`` keeps the rate limits; ``outcome`` decides
retries, deferrals and dead letters (``backoff`` the delays); ``tracking``
keeps references, acks, cards and ack-silences in step with what was sent,
its upkeep doing the HTTP work a send must not wait for (``resolution``:
cards of resolved groups turned "Resolved");
``refusals`` words what the messenger refused so a dead letter names the alert.
It talks to messengers through their port (``alertbridge.messengers``) only.
"""

from alertbridge.delivery.budget import SendBudget, SharedBudget
from alertbridge.delivery.loop import Dispatcher, target_of
from alertbridge.delivery.tracking import GroupTracker, Tracked

__all__ = [
    "Dispatcher",
    "GroupTracker",
    "SendBudget",
    "SharedBudget",
    "Tracked",
    "target_of",
]
