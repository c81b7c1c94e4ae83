"""What every config section shares, for ``alertbridge.config`` and the
messengers' own section and receiver models (each in its messenger's package).

It imports nothing of alertbridge's config or messengers, so a messenger's
section model can build on it without an import cycle.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from alertbridge.duration import parse_duration
from alertbridge.message import Recipients
from alertbridge.model import AlertGroup

Language = Literal["zh", "en"]
MessageType = Literal["text", "markdown"]
# What a receiver does with what it showed of a group when the group resolves:
# "new" sends a resolved message, "update" edits the messages (cards turn
# "Resolved"), "recall" takes them back and sends a resolved message.
ResolveMode = Literal["new", "update", "recall"]

# Names of apps, receivers …: they appear in URLs and key paths.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Section(BaseModel):
    """A config table: unknown keys are errors, and the result is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def duration_value(value: object) -> object:
    """A pydantic "before" validator: "90s" / "5m" strings and plain seconds become timedeltas."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def secret_not_empty(value: SecretStr | None) -> SecretStr | None:
    """A field validator: a secret that is set must not be empty."""
    if value is not None and not value.get_secret_value():
        raise ValueError("is empty")
    return value


Actors = Literal["recipients"] | list[str]
# A WeCom user id (letters, digits, _ - @ .), or party:<id> / tag:<id>.
_ACTOR = re.compile(r"(?:party|tag):\d{1,10}|[A-Za-z0-9][A-Za-z0-9_\-@.]{0,63}")


class ReceiverBase(Section):
    """The keys every receiver has, whatever messenger delivers its messages."""

    # Which messenger delivers it: each receiver model narrows this to its own kind.
    channel: str
    msgtype: MessageType = "markdown"
    template: str = "default"
    send_resolved: bool = True
    language: Language | None = None  # None: [server].language
    # The [silencers.NAME] that `silence` and buttons use for this receiver's alerts.
    silencer: str | None = None
    # Who may ack / silence: a list of WeCom user ids, "party:<id>" and
    # "tag:<id>" (resolved through WeCom's contact API), or "recipients": the
    # users the alert was sent to by name (to_user). Robots, the console,
    # to_party, to_tag and @all have no such users: nobody, until listed.
    allow_ack: Actors = "recipients"
    allow_silence: Actors = "recipients"
    # ack also creates a silence, extended by alertbridge until the group resolves.
    ack_silences: bool = False
    # Post alert images (Grafana panels) after the message; see [images].
    images: bool = False
    # Grafana webhooks must carry X-Grafana-Alerting-Signature made with this secret.
    grafana_hmac_secret: SecretStr | None = None
    # None: the first of resolve_modes (cards "update", everything else "new").
    on_resolve: ResolveMode | None = None

    _check_hmac_secret = field_validator("grafana_hmac_secret")(secret_not_empty)

    @field_validator("allow_ack", "allow_silence")
    @classmethod
    def _check_actors(cls, value: Actors) -> Actors:
        if isinstance(value, list):
            for entry in value:
                if not _ACTOR.fullmatch(entry):
                    raise ValueError(
                        f"{entry!r} is neither a WeCom user id nor party:<department id> or tag:<tag id>"
                    )
        return value

    # What the core asks of a receiver; each messenger's receiver model answers.

    def recipients_for(self, group: AlertGroup) -> Recipients:
        """What to store with a delivery of ``group`` to this receiver: who it goes
        to, who it @mentions (fixed when the webhook is accepted). None by default."""
        return Recipients()

    def attachment_urls(self, group: AlertGroup) -> tuple[str, ...]:
        """URLs of files to post after the last part of ``group``'s messages. None by default."""
        return ()

    @property
    def reply_app(self) -> str | None:
        """The app whose callback hears replies to its messages; None: nobody can reply."""
        return None

    @property
    def named_users(self) -> tuple[str, ...]:
        """The configured users its messages go to by name (``@all`` is not a name)."""
        return ()

    def named_recipients(self, recipients: Recipients) -> tuple[str, ...]:
        """The users a message of this receiver sent to ``recipients`` reached by name."""
        return ()

    @property
    def audience_listed(self) -> bool:
        """Whether its configured audience is a plain list of users (and nothing else)."""
        return False

    def audience_listed_for(self, recipients: Recipients) -> bool:
        """Whether a message sent to ``recipients`` went to listed users only."""
        return False

    @property
    def audience(self) -> tuple[str, str]:
        """Its audience, named in refusals and warnings when it is not listed: (Chinese, English)."""
        raise NotImplementedError

    @property
    def resolve_modes(self) -> tuple[ResolveMode, ...]:
        """The ``on_resolve`` modes its channel can do, its default first: only
        "new" unless its messenger can edit or recall what it sent."""
        return ("new",)

    @property
    def resolve_mode(self) -> ResolveMode:
        """What it does when a group resolves (``on_resolve``, else its default)."""
        return self.on_resolve if self.on_resolve is not None else self.resolve_modes[0]

    def channel_secrets(self) -> list[SecretStr]:
        """The channel's own secrets (a robot's key …), for log redaction."""
        return []

    @property
    def rendered_msgtype(self) -> str:
        """The msgtype its group template renders (``default.zh.<msgtype>.j2``);
        a messenger's receiver whose own shapes render no template (cards) names its fallback."""
        return self.msgtype

    @property
    def digest_msgtype(self) -> str:
        """The msgtype of its digests: a plain-content one, as a digest lists many groups."""
        return self.rendered_msgtype
