"""The delivery core: from the outbox to the messenger, within WeCom's limits.

``loop`` claims due deliveries and runs one worker per target; ``send``
composes (``compose``) and sends a notification part by part through the one
budgeted send path; ``digest`` merges a backlog that does not fit the budget
into stored digests; ``budget`` keeps the rate limits; ``outcome`` decides
retries, deferrals and dead letters (``backoff`` the delays); ``tracking``
keeps references, acks, cards and ack-silences in step with what was sent;
``refusals`` words what WeCom refused so a dead letter names the alert.
"""

from alertbridge.delivery.budget import (
    HOUR,
    MINUTE,
    RateLimit,
    SendBudget,
    limits_for,
    member_limits,
    robot_budget_key,
)
from alertbridge.delivery.loop import Dispatcher, target_of
from alertbridge.delivery.tracking import GroupTracker, Tracked

__all__ = [
    "HOUR",
    "MINUTE",
    "Dispatcher",
    "GroupTracker",
    "RateLimit",
    "SendBudget",
    "Tracked",
    "limits_for",
    "member_limits",
    "robot_budget_key",
    "target_of",
]
