"""The ``silence`` and ``unsilence`` commands, and the silence an ack may create.

Nothing half-done is recorded as done: a silence is stored only after its
silencer (Alertmanager or Grafana) created it, and marked expired only after
the silencer expired it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from alertbridge.commands.authz import ActorKey, Refusal
from alertbridge.commands.outcome import CommandResult, Outcome, failed
from alertbridge.commands.targets import CommandTargets
from alertbridge.commands.wording import pick, short_time, silencer_failure
from alertbridge.config import Config
from alertbridge.duration import format_duration
from alertbridge.silencers import Silencer, SilenceRequest, SilencerError, matchers_for
from alertbridge.sources.grafana import LEGACY_GROUP_PREFIX
from alertbridge.stores.state import AlertRef, SilenceRecord, StateStore


class SilenceCommands:
    """Creates and expires silences for the executor, which audits and counts them."""

    def __init__(
        self,
        *,
        config: Config,
        state: StateStore,
        silencers: Mapping[str, Silencer],
        targets: CommandTargets,
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._state = state
        self._silencers = silencers
        self._targets = targets
        self._clock = clock

    def t(self, zh: str, en: str) -> str:
        return self._targets.t(zh, en)

    def _time(self, moment: datetime) -> str:
        return short_time(self._config, moment)

    async def create(
        self,
        silencer: Silencer,
        ref: AlertRef,
        user: str,
        duration: timedelta,
        comment: str,
        *,
        via_ack: bool = False,
    ) -> str:
        firing = [a.labels for a in ref.alerts if a.firing] or [a.labels for a in ref.alerts]
        matchers = matchers_for(firing, self._config.commands.volatile_labels)
        now = self._clock()
        note = f"via alertbridge: #{ref.ref} {ref.title}" + (f": {comment}" if comment else "")
        request = SilenceRequest(
            matchers=matchers, starts_at=now, ends_at=now + duration, created_by=user, comment=note
        )
        silence_id = await silencer.create(request)
        await self._state.add_silence(
            SilenceRecord(
                silence_id=silence_id,
                silencer=silencer.name,
                ref=ref.ref,
                created_by=user,
                ends_at=request.ends_at,
                matchers=", ".join(str(m) for m in matchers),
                created_at=now,
                via_ack=via_ack,
            )
        )
        return silence_id

    async def silence(
        self, user: str, ref_number: int, duration: timedelta, comment: str, app: str | None
    ) -> tuple[Outcome, int | None, str | None]:
        ref = await self._targets.resolve(user, ref_number)
        if isinstance(ref, Outcome):
            return ref, ref_number, None
        refused = await self._targets.refused(user, ref, ActorKey.SILENCE, app)
        if refused is not None:
            return refused, ref.ref, None
        lang = self._targets.lang(ref)
        if ref.group_key.startswith(LEGACY_GROUP_PREFIX):
            return (
                failed(
                    pick(
                        lang,
                        f"#{ref.ref} 来自旧版 Grafana 告警，它没有静默 API；请在 Grafana 中暂停该规则。",
                        f"#{ref.ref} comes from legacy Grafana alerting, which has no silence API; pause the rule in Grafana.",
                    ),
                    "legacy_grafana",
                ),
                ref.ref,
                None,
            )
        silencer = self._targets.silencer_for(ref)
        if silencer is None:
            return (
                failed(
                    pick(
                        lang,
                        "该告警的接收器没有配置静默器（silencer）。",
                        "No silencer is configured for this alert's receiver.",
                    ),
                    "no_silencer",
                ),
                ref.ref,
                None,
            )
        try:
            silence_id = await self.create(silencer, ref, user, duration, comment)
        except SilencerError as exc:
            self._targets.log_silencer_error(user, ref, exc)
            failure = silencer_failure(lang, exc)
            return (
                failed(
                    pick(lang, f"静默未创建：{failure}。", f"Silence not created: {failure}."),
                    f"silencer_{exc.kind}",
                ),
                ref.ref,
                None,
            )
        until = self._time(self._clock() + duration)
        reply = pick(
            lang,
            f"已静默 #{ref.ref} {ref.title} {format_duration(duration, 'zh')}，至 {until}\n静默 ID：{silence_id}\n{silencer.silence_url(silence_id)}",
            f"Silenced #{ref.ref} {ref.title} for {format_duration(duration, 'en')}, until {until}\nSilence ID: {silence_id}\n{silencer.silence_url(silence_id)}",
        )
        return Outcome(reply, pick(lang, f"已静默至 {until}", f"Silenced until {until}")), ref.ref, silence_id

    async def unsilence(
        self, user: str, ref_number: int | None, silence_id: str | None, app: str | None
    ) -> tuple[Outcome, int | None, str | None]:
        now = self._clock()
        ref: AlertRef | None
        if silence_id is not None:
            record = await self._state.get_silence(silence_id)
            if record is None:
                return (
                    failed(
                        self.t(
                            f"找不到由 alertbridge 创建的静默 {silence_id}。",
                            f"No silence {silence_id} created by alertbridge.",
                        ),
                        "unknown_silence",
                    ),
                    None,
                    silence_id,
                )
            targets = [record]
            ref = await self._state.get_ref(record.ref) if record.ref is not None else None
            if ref is None and record.created_by.casefold() != user.casefold():
                # Its alerts are forgotten: nobody can say who received them.
                return (
                    Outcome(
                        self.t(
                            f"无权取消静默 {silence_id}：它的告警已过期，只有创建者 {record.created_by} 可以取消。",
                            f"Not allowed to unsilence {silence_id}: its alerts expired; only its creator "
                            f"{record.created_by} may.",
                        ),
                        result=CommandResult.REFUSED,
                        reason=Refusal.NOT_THE_CREATOR.value,
                    ),
                    None,
                    silence_id,
                )
        else:
            found = await self._targets.resolve(user, ref_number)
            if isinstance(found, Outcome):
                return found, ref_number, None
            ref = found
            targets = await self._state.silences_for_ref(ref.ref, active_at=now)
            if not targets:
                return (
                    failed(
                        pick(
                            self._targets.lang(ref),
                            f"#{ref.ref} 没有生效中的静默。",
                            f"#{ref.ref} has no active silence.",
                        ),
                        "no_active_silence",
                    ),
                    ref.ref,
                    None,
                )
        ref_of = ref.ref if ref is not None else None
        lang = self._targets.lang(ref)
        if ref is not None:
            refused = await self._targets.refused(user, ref, ActorKey.SILENCE, app)
            if refused is not None:
                return refused, ref.ref, silence_id
        expired: list[str] = []
        for record in targets:
            silencer = self._silencers.get(record.silencer)
            if silencer is None:
                continue
            try:
                await silencer.expire(record.silence_id)
            except SilencerError as exc:
                self._targets.log_silencer_error(user, ref, exc)
                failure = silencer_failure(lang, exc)
                return (
                    failed(
                        pick(lang, f"取消静默失败：{failure}。", f"Unsilence failed: {failure}."),
                        f"silencer_{exc.kind}",
                    ),
                    ref_of,
                    record.silence_id,
                )
            await self._state.mark_silence_expired(record.silence_id, now)
            expired.append(record.silence_id)
        reply = pick(lang, f"已取消静默：{', '.join(expired)}", f"Silence expired: {', '.join(expired)}")
        return Outcome(reply), ref_of, ", ".join(expired) or None
