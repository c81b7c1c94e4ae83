"""Words for what WeCom refused, so a dead letter says which alert to fix.

When WeCom refuses a message for its content (``DeliveryError.message_at_fault``:
40033 invalid characters, 40058, 45002 …), the dispatcher splits the message
to find the alerts or groups that cannot be sent and delivers the rest. The
dead letters it leaves must name the offender and the errcode, or an operator
cannot act on them: these helpers build those reasons.
"""

from __future__ import annotations

from collections.abc import Sequence

from alertbridge.errors import DeliveryError
from alertbridge.model import Alert, AlertGroup

# Labels that tell alerts of one group apart, in order of preference.
_IDENTIFYING = ("instance", "pod", "host", "job", "service")


def describe_alert(alert: Alert) -> str:
    """``HighCPU instance=web-1 (fingerprint 1a2b…)``: enough to find the alert."""
    name = alert.labels.get("alertname", "")
    label = next((f"{key}={alert.labels[key]}" for key in _IDENTIFYING if key in alert.labels), "")
    words = " ".join(w for w in (name, label) if w) or "alert"
    return f"{words!r} (fingerprint {alert.fingerprint})"


def describe_group(group: AlertGroup, ref: int) -> str:
    """``#27 'HighCPU' (3 alerts)``."""
    name = group.common_labels.get("alertname") or " ".join(group.group_labels.values()) or group.group_key
    return f"#{ref} {name!r} ({len(group.alerts)} alerts)"


def refused(what: str, error: DeliveryError) -> str:
    """``invalid_characters: WeCom refused <what>: <WeCom's answer>``."""
    return f"{error.reason}: WeCom refused {what}: {error}"


def alerts_refused(refusals: Sequence[str], delivered: int) -> str:
    """A delivery's dead-letter reason after its alerts were sent one by one."""
    others = f"; its {delivered} other alerts were delivered one per message" if delivered else ""
    return "; ".join(refusals) + others
