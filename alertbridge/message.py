"""What a channel sends: one rendered message body, and whom it goes to.

Each messenger states its own byte limits (``Messenger.byte_limits``, listed
in ``alertbridge.messengers.registry``); a message carries the limit it was
rendered against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One complete message body, guaranteed to fit its limit.

    ``part``/``parts`` number the messages a group was split into (1/1 when it
    fit in one). A structured message (WeCom ``template_card``, ``textcard``,
    ``news``) carries its msgtype's JSON section in ``card`` and a plain
    summary in ``content``. ``images`` are URLs of alert images
    (Grafana panels) the channel posts after the message, best effort;
    ``files`` URLs of files it posts after those (a receiver's
    ``attachment_urls``), best effort too. The dispatcher sets both on the
    last part only.
    """

    msgtype: str  # "text", "markdown", "markdown_v2", "textcard", "news", "template_card" …
    content: str
    limit: int
    part: int = 1
    parts: int = 1
    card: Mapping[str, Any] | None = None
    images: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def byte_count(self) -> int:
        return len(self.content.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Recipients:
    """Who a message goes to; captured when the webhook is accepted.

    App messages go to ``to_user``/``to_party``/``to_tag``. Robot messages
    have no recipients of their own (the robot key names the group chat) but
    may @mention people: ``mention_*`` (worked out by the receiver's messenger).
    Console messages have neither.
    """

    to_user: tuple[str, ...] = ()
    to_party: tuple[str, ...] = ()
    to_tag: tuple[str, ...] = ()
    mention_users: tuple[str, ...] = ()
    mention_mobiles: tuple[str, ...] = ()
    mention_all: bool = False

    def to_dict(self) -> dict[str, list[str] | bool]:
        """The stored JSON form; mention keys only when set, so app and console rows are unchanged."""
        data: dict[str, list[str] | bool] = {
            "to_user": list(self.to_user),
            "to_party": list(self.to_party),
            "to_tag": list(self.to_tag),
        }
        if self.mention_users:
            data["mention_users"] = list(self.mention_users)
        if self.mention_mobiles:
            data["mention_mobiles"] = list(self.mention_mobiles)
        if self.mention_all:
            data["mention_all"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipients:
        """Reads every version's form (rows stored before mentions lack their keys)."""
        return cls(
            to_user=tuple(data.get("to_user", ())),
            to_party=tuple(data.get("to_party", ())),
            to_tag=tuple(data.get("to_tag", ())),
            mention_users=tuple(data.get("mention_users", ())),
            mention_mobiles=tuple(data.get("mention_mobiles", ())),
            mention_all=bool(data.get("mention_all", False)),
        )
