"""Who an alert concerns: robot @mentions and extra app recipients, from alert labels.

Pure functions of (group, config), run once when a webhook is accepted; the
result is stored with the delivery in ``Recipients`` so a retry, or a config
change while the delivery waits, does not change who is notified.

``people_for`` reads, for each alert that matters (the firing ones; all of
them when none is firing), the value of the first of ``MentionConfig.keys``
the alert has — the label, else the annotation of that name — and looks it up
in ``users`` / ``mobiles``. A value such as ``"dba, sre"`` that is not a key
of either map as a whole is split on commas and whitespace and each name is
looked up. Names mapped nowhere are ignored (logged at debug: alerts commonly
carry teams that have no entry). An empty value counts as absent, so the next
key is tried.

``static_users`` / ``static_mobiles`` come first in the result, then the
mapped ones in alert order, without duplicates; each list is capped at
``MAX_MENTIONS`` (WeCom's limit), so the statics — configured explicitly —
always survive the cap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alertbridge.message import Recipients
from alertbridge.model import Alert, AlertGroup

if TYPE_CHECKING:  # the config models call into this module: no import at run time
    from alertbridge.messengers.wecom.config import AppReceiver, MentionConfig, RobotReceiver

log = logging.getLogger(__name__)

# WeCom: at most 100 userids in mentioned_list and 100 phones in mentioned_mobile_list.
MAX_MENTIONS = 100

_SEPARATORS = re.compile(r"[,，;；\s]+")


@dataclass(frozen=True, slots=True)
class People:
    """Who a group concerns: WeCom userids, mobile numbers, and whether to @all."""

    users: tuple[str, ...] = ()
    mobiles: tuple[str, ...] = ()
    all: bool = False


def people_for(group: AlertGroup, config: MentionConfig) -> People:
    """The people ``config`` maps ``group``'s alerts to (see the module docstring)."""
    users: list[str] = list(config.static_users)
    mobiles: list[str] = list(config.static_mobiles)
    for alert in group.firing or group.alerts:
        value = _key_value(alert, config.keys)
        if value is None:
            continue
        for name in _names(value, config):
            mapped_users = config.users.get(name)
            mapped_mobiles = config.mobiles.get(name)
            if mapped_users is None and mapped_mobiles is None:
                log.debug("mention_unmapped alert=%s value=%r", alert.name, name)
                continue
            users.extend(mapped_users or ())
            mobiles.extend(mapped_mobiles or ())
    return People(users=_unique(users), mobiles=_unique(mobiles), all=config.all)


def app_recipients(receiver: AppReceiver, group: AlertGroup) -> Recipients:
    """What to store with a delivery of ``group`` to app ``receiver``
    (``AppReceiver.recipients_for``): ``to_user`` plus the users
    ``extra_recipients`` maps the group to (mobiles and ``all`` do not apply
    to apps: message/send takes userids, and ``@all`` would reach the whole
    app scope), ``to_party``, ``to_tag``."""
    extra = people_for(group, receiver.extra_recipients).users if receiver.extra_recipients else ()
    return Recipients(
        to_user=_unique([*receiver.to_user, *extra], cap=None),
        to_party=tuple(receiver.to_party),
        to_tag=tuple(receiver.to_tag),
    )


def robot_recipients(receiver: RobotReceiver, group: AlertGroup) -> Recipients:
    """The @mentions of robot ``receiver``'s ``mention`` for ``group`` (``RobotReceiver.recipients_for``)."""
    if receiver.mention is None:
        return Recipients()
    people = people_for(group, receiver.mention)
    return Recipients(mention_users=people.users, mention_mobiles=people.mobiles, mention_all=people.all)


def content_mentions(recipients: Recipients, channel: str, msgtype: str) -> list[str]:
    """The ``<@userid>`` strings to pass as ``Renderer.render(mentions=...)``.

    Only robot markdown mentions people inside the content; robot text uses
    ``mentioned_list`` (``RobotChannel``), apps and console have no mentions.
    Markdown has no syntax for @all or for mobiles (docs §5), so those are
    not included.
    """
    if channel != "robot" or msgtype != "markdown":
        return []
    return [f"<@{user}>" for user in recipients.mention_users if user != "@all"]


def _key_value(alert: Alert, keys: Sequence[str]) -> str | None:
    """The value of the first of ``keys`` the alert has, label before annotation."""
    for key in keys:
        for source in (alert.labels, alert.annotations):
            value = source.get(key, "").strip()
            if value:
                return value
    return None


def _names(value: str, config: MentionConfig) -> list[str]:
    if value in config.users or value in config.mobiles:
        return [value]
    return [name for name in _SEPARATORS.split(value) if name]


def _unique(values: Iterable[str], cap: int | None = MAX_MENTIONS) -> tuple[str, ...]:
    """Stripped, non-empty, first occurrence kept, at most ``cap``."""
    seen: dict[str, None] = {}
    for value in values:
        value = value.strip()
        if value and value not in seen:
            seen[value] = None
    out = tuple(seen)
    if cap is not None and len(out) > cap:
        log.warning("mentions_capped kept=%d dropped=%d", cap, len(out) - cap)
        out = out[:cap]
    return out
