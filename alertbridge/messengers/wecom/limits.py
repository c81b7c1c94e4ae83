"""WeCom's send and size limits, as the delivery core's ``SendBudget`` counts them.

WeCom drops (answering ok!) an app's messages to a member beyond 30 a minute
and 1000 an hour, and a group robot answers 45009 beyond 20 a minute. A
budget is keyed by what WeCom counts against — one app's member, party or
tag, or one robot key (hashed: the key is a secret) — so receivers that
share a member or a robot share its budget.

An app's group chats (appchat) have limits of their own: each member
receives at most 200 chat messages a minute and 10,000 a day from one app.
A chat message counts against the chat (``app:<corp>:<agent>:chat:<chatid>``)
and against each of its members (``app:<corp>:<agent>:chat-member:<userid>``),
so two chats sharing a member share that member's budget; the members are
the ones ``appchat/get`` last listed (none before the first lookup: the
chat's key alone then keeps each member within what this chat sends). The
day is counted as any 24 hours, never more than WeCom's natural day allows.

Content limits are in UTF-8 bytes (a CJK character is 3 bytes); sources:
WeCom message/send and group robot docs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final

from alertbridge.config_base import ReceiverBase
from alertbridge.message import Recipients
from alertbridge.messengers import DAY, HOUR, MINUTE, RateLimit
from alertbridge.messengers.wecom.config import (
    AppChatReceiver,
    AppReceiver,
    RobotReceiver,
    WeComAppConfig,
    WeComConfig,
)

# Per app and chat member (appchat).
CHAT_MEMBER_PER_MINUTE: Final = 200
CHAT_MEMBER_PER_DAY: Final = 10_000

# Per field of the structured types (docs §4.3, §5): WeCom cuts a longer
# textcard/news description itself, mid-character; we cut first.
TITLE_BYTES: Final = 128
DESCRIPTION_BYTES: Final = 512
URL_BYTES: Final = 2048
NEWS_ARTICLES: Final = 8  # per news message (45008 beyond)
BTNTXT_CHARS: Final = 4

# (channel, msgtype) -> max UTF-8 bytes of the content the template renders.
# For textcard and news that content is one card's or one article's
# description; their titles are built in code (``alertbridge.messengers.wecom.articles``).
WECOM_BYTE_LIMITS: Final = {
    ("app", "text"): 2048,
    ("app", "markdown"): 2048,
    ("appchat", "text"): 2048,
    ("appchat", "markdown"): 2048,
    ("app", "textcard"): DESCRIPTION_BYTES,
    ("app", "news"): DESCRIPTION_BYTES,
    ("appchat", "textcard"): DESCRIPTION_BYTES,
    ("appchat", "news"): DESCRIPTION_BYTES,
    ("robot", "text"): 2048,
    ("robot", "markdown"): 4096,
    ("robot", "markdown_v2"): 4096,
    ("robot", "news"): DESCRIPTION_BYTES,
}


def limits_for(
    wecom: WeComConfig,
    receivers: Iterable[ReceiverBase],
    receiver: ReceiverBase,
    recipients: Recipients,
    chat_members: Sequence[str] = (),
) -> tuple[RateLimit, ...]:
    """The limits a message from ``receiver`` to ``recipients`` counts against;
    ``receivers`` are all configured ones (receivers sharing a robot key share
    its budget at the lowest of their rates); ``chat_members``: an appchat
    receiver's chat members, as known. None for other messengers' receivers."""
    if isinstance(receiver, AppChatReceiver):
        return appchat_limits(wecom.apps[receiver.app], receiver.chatid, chat_members)
    if isinstance(receiver, AppReceiver):
        targets = [
            *(f"user:{user.casefold()}" for user in recipients.to_user),
            *(f"party:{party}" for party in recipients.to_party),
            *(f"tag:{tag}" for tag in recipients.to_tag),
        ]
        return _app_limits(wecom.apps[receiver.app], targets)
    if isinstance(receiver, RobotReceiver):
        robot_key = receiver.robot_key.get_secret_value()
        allowed = min(
            other.rate_limit_per_minute
            for other in receivers
            if isinstance(other, RobotReceiver) and other.robot_key.get_secret_value() == robot_key
        )
        return (RateLimit(robot_budget_key(robot_key), MINUTE, allowed),)
    return ()


def appchat_limits(app: WeComAppConfig, chatid: str, members: Sequence[str]) -> tuple[RateLimit, ...]:
    """The limits of one message into group chat ``chatid`` (see the module docs)."""
    prefix = f"app:{app.corp_id}:{app.agent_id}"
    keys = [
        f"{prefix}:chat:{chatid}",
        *(f"{prefix}:chat-member:{m.casefold()}" for m in dict.fromkeys(members)),
    ]
    return tuple(
        RateLimit(key, window, allowed)
        for key in keys
        for window, allowed in ((MINUTE, CHAT_MEMBER_PER_MINUTE), (DAY, CHAT_MEMBER_PER_DAY))
    )


def member_limits(app: WeComAppConfig, user: str) -> tuple[RateLimit, ...]:
    """The limits an app message to one member counts against, e.g. a command
    reply: the same keys as that member's alerts, so replies and alerts share WeCom's count."""
    return _app_limits(app, [f"user:{user.casefold()}"])


def _app_limits(app: WeComAppConfig, targets: Sequence[str]) -> tuple[RateLimit, ...]:
    # Keyed by the WeCom app, not our name for it: two names for one
    # AgentId still share WeCom's count.
    prefix = f"app:{app.corp_id}:{app.agent_id}"
    limits: list[RateLimit] = []
    for target in dict.fromkeys(targets):
        key = f"{prefix}:{target}"
        limits.append(RateLimit(key, MINUTE, app.rate_limit_per_minute))
        limits.append(RateLimit(key, HOUR, app.rate_limit_per_hour))
    return tuple(limits)


def robot_budget_key(robot_key: str) -> str:
    """A robot's budget key: a hash, because the robot key itself is a secret."""
    return "robot:" + hashlib.sha256(robot_key.encode()).hexdigest()[:16]
