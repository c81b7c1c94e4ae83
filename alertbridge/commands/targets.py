"""Finding the alert a command names and deciding whether its user may act on it.

Ack, silence and unsilence all start the same way — resolve the reference
(or the user's latest alert), check the allow-lists, pick the receiver's
language and silencer — so the rules live here once for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from alertbridge.commands.authz import ActorKey, Authorizer, Refusal, refusal_text
from alertbridge.commands.outcome import CommandResult, Outcome, failed
from alertbridge.commands.wording import pick
from alertbridge.config import Config, ReceiverConfig
from alertbridge.config_base import Language
from alertbridge.senders import silencer_for as silencer_for_receiver
from alertbridge.silencers import Silencer, SilencerError
from alertbridge.stores.state import AlertRef, StateStore

log = logging.getLogger("alertbridge.commands.executor")


class CommandTargets:
    """Lookups and authorization shared by the commands that act on an alert."""

    def __init__(
        self, *, config: Config, state: StateStore, authorizer: Authorizer, silencers: Mapping[str, Silencer]
    ) -> None:
        self._config = config
        self._state = state
        self._authorizer = authorizer
        self._silencers = silencers
        self.language = config.server.language

    def t(self, zh: str, en: str) -> str:
        return pick(self.language, zh, en)

    async def resolve(self, user: str, ref: int | None) -> AlertRef | Outcome:
        found = await (self._state.latest_ref_for_user(user) if ref is None else self._state.get_ref(ref))
        if found is None:
            if ref is None:
                return failed(
                    self.t(
                        "还没有发给你的告警；请带上编号，例如：确认 27",
                        "No alert was sent to you yet; give a reference, e.g. ack 27",
                    ),
                    "no_alert_for_user",
                )
            return failed(
                self.t(
                    f"找不到告警 #{ref}（编号错误或已过期）。",
                    f"No alert #{ref} (wrong or expired reference).",
                ),
                "unknown_reference",
            )
        return found

    async def refused(self, user: str, ref: AlertRef, key: ActorKey, app: str | None) -> Outcome | None:
        """The refusal when ``user`` may not act on ``ref`` (None: allowed)."""
        refusal = await self._authorizer.check(user, ref.receiver, ref.recipients, key, via_app=app)
        if refusal is None:
            return None
        return self.refusal(refusal, ref, key)

    def refusal(self, refusal: Refusal, ref: AlertRef, key: ActorKey) -> Outcome:
        text = refusal_text(
            self._config, refusal, ref=ref.ref, receiver_name=ref.receiver, recipients=ref.recipients, key=key
        )
        return Outcome(text, result=CommandResult.REFUSED, reason=refusal.value)

    def lang(self, ref: AlertRef | None) -> Language:
        """The language of replies about ``ref``: its receiver's."""
        if ref is None or ref.receiver not in self._config.receivers:
            return self.language
        return self._config.language_of(ref.receiver)

    def log_silencer_error(self, user: str, ref: AlertRef | None, error: SilencerError) -> None:
        log.warning(
            "command_silencer_failed user=%s ref=%s reason=%s error=%s",
            user,
            ref.ref if ref is not None else None,
            error.kind.value,
            error,
        )

    def receiver(self, ref: AlertRef) -> ReceiverConfig | None:
        return self._config.receivers.get(ref.receiver)

    def silencer_for(self, ref: AlertRef) -> Silencer | None:
        name = silencer_for_receiver(self._config, ref.receiver, ref.source, ref.cluster)
        return self._silencers.get(name) if name else None
