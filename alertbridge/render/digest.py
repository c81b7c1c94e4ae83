"""What a digest template sees.

A digest lists several alert groups, one line per alert, when a recipient's
backlog is larger than WeCom lets us send (see ``alertbridge.budget``). Its
templates are ``digest.{language}.{msgtype}.j2``, overridable like the others.
Each part gets ``sections`` — the groups it shows, each with the alerts of
that group that landed in this part — plus ``totals`` over the whole digest,
so every part can say how much it summarises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alertbridge.message import RenderedMessage
from alertbridge.model import Ack, Alert, AlertGroup

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
            "groups": len(sections),
            "firing": sum(len(s.group.firing) for s in sections),
            "resolved": sum(len(s.group.resolved) for s in sections),
        },
        "part": part,
        "parts": parts,
    }
