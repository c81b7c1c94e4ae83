"""What a digest template sees.

A digest lists several alert groups, one line per alert, when a recipient's
backlog is larger than WeCom lets us send (see ``alertbridge.delivery.budget``). Its
templates are ``digest.{language}.{msgtype}.j2``, overridable like the others.
Each part gets ``sections`` — the groups it shows, each with the alerts of
that group that landed in this part — and ``totals`` of what *this part*
shows. Nothing in a part depends on the parts after it (no "1/5", no grand
totals): after a crash the backlog is merged again, possibly with newer
notifications appended, and the parts WeCom already has come out
byte-identical, so its duplicate check hides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alertbridge.message import RenderedMessage
from alertbridge.model import Ack, Alert, AlertGroup, Status

DIGEST_TEMPLATE = "digest"


@dataclass(frozen=True, slots=True)
class DigestSection:
    """One group in a digest: its reference (``#27``) and latest state."""

    ref: int
    group: AlertGroup
    ack: Ack | None = None


@dataclass(frozen=True, slots=True)
class DigestPart:
    """One digest message and the references whose last alert it carries."""

    message: RenderedMessage
    refs_done: tuple[int, ...]


def digest_context(
    sections: Sequence[DigestSection], chunk: Sequence[tuple[int, Alert]], *, part: int, parts: int
) -> dict[str, Any]:
    """The template context of one part holding ``chunk`` ((section index, alert) pairs, in order)."""
    shown: dict[int, list[Alert]] = {}
    for index, alert in chunk:
        shown.setdefault(index, []).append(alert)
    return {
        "sections": [
            {
                "ref": sections[index].ref,
                "group": sections[index].group,
                "ack": sections[index].ack,
                "alerts": alerts,
            }
            for index, alerts in shown.items()
        ],
        "totals": {
            "groups": len(shown),
            "firing": sum(1 for _, alert in chunk if alert.status is Status.FIRING),
            "resolved": sum(1 for _, alert in chunk if alert.status is Status.RESOLVED),
        },
        "part": part,
        "parts": parts,
    }
