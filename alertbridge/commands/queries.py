"""The read-only commands, ``alerts`` and ``silences``: what a user may see
of the state, in the configured language, within one reply message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from alertbridge.commands.authz import ActorKey, Authorizer
from alertbridge.commands.outcome import Outcome
from alertbridge.commands.wording import fit_lines, pick, short_time
from alertbridge.config import Config
from alertbridge.stores.state import SilenceRecord, StateStore


class CommandQueries:
    """Answers the listing commands; the executor audits and counts them."""

    def __init__(
        self, *, config: Config, state: StateStore, authorizer: Authorizer, clock: Callable[[], datetime]
    ) -> None:
        self._config = config
        self._state = state
        self._authorizer = authorizer
        self._clock = clock

    def t(self, zh: str, en: str) -> str:
        return pick(self._config.server.language, zh, en)

    def _time(self, moment: datetime) -> str:
        return short_time(self._config, moment)

    async def alerts(self, user: str) -> Outcome:
        """``alerts``: the firing groups sent to ``user``, newest first."""
        refs = await self._state.refs_for_user(user, firing_only=True, limit=50)
        if not refs:
            return Outcome(self.t("当前没有发给你的告警。", "No firing alerts were sent to you."))
        lines = [self.t(f"发给你的告警（{len(refs)}）：", f"Alerts sent to you ({len(refs)}):")]
        for ref in refs:
            ack = self.t(f" · 已确认 {ref.ack.user}", f" · acked by {ref.ack.user}") if ref.ack else ""
            count = sum(1 for a in ref.alerts if a.firing)
            lines.append(
                f"#{ref.ref} {ref.title} · {count}{self.t(' 条', ' alerts')} · {self._time(ref.updated_at)}{ack}"
            )
        return Outcome(fit_lines(lines, self.t("…还有 {n} 条", "… {n} more")))

    async def silences(self, user: str, app: str | None) -> Outcome:
        """``silences``: the active silences on refs ``user`` may silence, and those
        they created — the matchers and ids of everyone else's alerts are not theirs to see."""
        records = [
            r for r in await self._state.active_silences(self._clock()) if await self._may_see(user, r, app)
        ]
        if not records:
            return Outcome(self.t("没有生效中的静默。", "No active silences."))
        lines = [self.t(f"生效中的静默（{len(records)}）：", f"Active silences ({len(records)}):")]
        for record in records:
            ref = f"#{record.ref} " if record.ref else ""
            lines.append(
                f"{ref}{record.matchers} · {self.t('至', 'until')} {self._time(record.ends_at)} · {record.created_by} · {record.silence_id}"
            )
        return Outcome(fit_lines(lines, self.t("…还有 {n} 条", "… {n} more")))

    async def _may_see(self, user: str, record: SilenceRecord, app: str | None) -> bool:
        if record.created_by.casefold() == user.casefold():
            return True
        ref = await self._state.get_ref(record.ref) if record.ref is not None else None
        if ref is None:
            return False
        refusal = await self._authorizer.check(
            user, ref.receiver, ref.recipients, ActorKey.SILENCE, via_app=app
        )
        return refusal is None
