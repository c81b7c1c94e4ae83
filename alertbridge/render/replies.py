"""What the recipients of a message can do by replying to it.

Replies (``ack 27``, ``silence 27 2h``) only reach alertbridge through a
self-built app whose callback ("接收消息") is configured. Group robots are
send-only and the console has no one to answer, so a message must not tell
their readers to "reply ack …": nothing would happen. ``Replies`` tells the
templates which hints to show, and whether a silence link is still needed
(a reader who can reply ``silence`` does not need the Alertmanager form).

The renderer takes a ``Replies`` per render; ``replies_for`` derives it from
the config. The default, ``NO_REPLIES``, is the safe one: no reply hints,
silence links shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from alertbridge.config import Config, ReceiverConfig
from alertbridge.config_base import Actors


@dataclass(frozen=True, slots=True)
class Replies:
    """``ack``: replying ``ack N`` works; ``silence``: replying ``silence N 2h`` works too."""

    ack: bool = False
    silence: bool = False


NO_REPLIES = Replies()


def replies_for(config: Config, receiver: str) -> Replies:
    """The replies ``receiver``'s readers can send: only an app receiver whose app
    has its callback configured hears them, only from someone who may act
    (``allow_ack`` / ``allow_silence``); ``silence`` also needs a silencer."""
    receiver_config = config.receivers[receiver]
    if not config.hears_replies(receiver_config):
        return NO_REPLIES
    return Replies(
        ack=_anyone_may(receiver_config, receiver_config.allow_ack),
        silence=config.silencer_of(receiver) is not None
        and _anyone_may(receiver_config, receiver_config.allow_silence),
    )


def _anyone_may(receiver: ReceiverConfig, allow: Actors) -> bool:
    """Whether an allow setting lets anybody act: a non-empty list, or
    "recipients" where users are named (to_party, to_tag and @all name nobody,
    see alertbridge.commands.authz)."""
    if allow == "recipients":
        return bool(receiver.named_users)
    return bool(allow)
