"""Carry out commands from WeCom users: authorize, act, audit, and say what happened.

Text replies and card buttons both end here, so authorization and the audit
trail are the same whichever way a user asked. Every outcome is a short
message for the user in the configured language; nothing half-done is
recorded as done (a silence is recorded only after Alertmanager created it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from alertbridge.commands import Ack, Command, Help, ListAlerts, ListSilences, Silence, Unsilence
from alertbridge.commands.authz import ActorKey, Authorizer, Directory, NoDirectory, Refusal, refusal_text
from alertbridge.commands.outcome import CommandResult, Outcome, failed
from alertbridge.commands.parser import help_text
from alertbridge.commands.queries import CommandQueries
from alertbridge.commands.wording import pick, short_time, silencer_failure
from alertbridge.config import Config, ReceiverConfig
from alertbridge.config_base import Language
from alertbridge.duration import format_duration
from alertbridge.errors import StoreError
from alertbridge.metrics import Metrics
from alertbridge.senders import silencer_for
from alertbridge.silencers import Silencer, SilenceRequest, SilencerError, matchers_for
from alertbridge.sources.grafana import LEGACY_GROUP_PREFIX
from alertbridge.stores.state import AlertRef, AuditEntry, SilenceRecord, StateStore

log = logging.getLogger(__name__)


class CommandExecutor:
    def __init__(
        self,
        *,
        config: Config,
        state: StateStore,
        silencers: Mapping[str, Silencer],
        metrics: Metrics | None = None,
        directory: Directory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._authorizer = Authorizer(config, directory if directory is not None else NoDirectory())
        self._metrics = metrics if metrics is not None else Metrics()
        self._state = state
        self._silencers = silencers
        self._clock = clock
        self.language = config.server.language
        self._zh = self.language == "zh"
        self._queries = CommandQueries(config=config, state=state, authorizer=self._authorizer, clock=clock)

    def t(self, zh: str, en: str) -> str:
        return zh if self._zh else en

    def _time(self, moment: datetime) -> str:
        return short_time(self._config, moment)

    async def execute(self, user: str, command: Command, *, action: str, app: str | None = None) -> Outcome:
        """Run ``command`` for ``user``; ``action`` names it in the audit trail.

        ``app`` is the WeCom app the command came through: it resolves
        ``party:``/``tag:`` allow-list entries of receivers without an app.
        """
        try:
            outcome, ref, silence_id = await self._dispatch(user, command, app)
        except StoreError as exc:
            log.error("command_store_error user=%s action=%s error=%s", user, action, exc)
            outcome, ref, silence_id = (
                failed(
                    self.t("内部存储暂不可用，请稍后重试。", "Storage is unavailable; try again later."),
                    "store_unavailable",
                ),
                None,
                None,
            )
        result = outcome.result.value
        self._metrics.commands.labels(type(command).__name__.lower(), result).inc()
        log.log(
            logging.INFO if outcome.ok else logging.WARNING,
            "command_executed user=%s action=%s ref=%s result=%s reason=%s silence_id=%s",
            user,
            action,
            ref,
            result,
            outcome.reason or None,
            silence_id,
        )
        first_line = outcome.reply.splitlines()[0] if outcome.reply else ""
        try:
            await self._state.add_audit(
                AuditEntry(
                    at=self._clock(),
                    user=user,
                    action=action,
                    ref=ref,
                    result=result,
                    detail=(f"{outcome.reason}: {first_line}" if outcome.reason else first_line)[:200],
                    silence_id=silence_id,
                )
            )
        except StoreError as exc:
            log.error("audit_write_failed user=%s action=%s error=%s", user, action, exc)
        return outcome

    async def _dispatch(
        self, user: str, command: Command, app: str | None
    ) -> tuple[Outcome, int | None, str | None]:
        match command:
            case Ack(ref=ref):
                return await self._ack(user, ref, app)
            case Silence(ref=ref, duration=duration, comment=comment):
                return await self._silence(user, ref, duration, comment, app)
            case Unsilence(ref=ref, silence_id=silence_id):
                return await self._unsilence(user, ref, silence_id, app)
            case ListAlerts():
                return await self._queries.alerts(user), None, None
            case ListSilences():
                return await self._queries.silences(user, app), None, None
            case Help():
                return Outcome(self.help_text()), None, None
        raise TypeError(f"unknown command {command!r}")

    # -- lookups and authorization ----------------------------------------

    async def _resolve(self, user: str, ref: int | None) -> AlertRef | Outcome:
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

    async def _refused(self, user: str, ref: AlertRef, key: ActorKey, app: str | None) -> Outcome | None:
        """The refusal when ``user`` may not act on ``ref`` (None: allowed)."""
        refusal = await self._authorizer.check(user, ref.receiver, ref.recipients, key, via_app=app)
        if refusal is None:
            return None
        return self._refusal(refusal, ref, key)

    def _refusal(self, refusal: Refusal, ref: AlertRef, key: ActorKey) -> Outcome:
        text = refusal_text(
            self._config, refusal, ref=ref.ref, receiver_name=ref.receiver, recipients=ref.recipients, key=key
        )
        return Outcome(text, result=CommandResult.REFUSED, reason=refusal.value)

    def _lang(self, ref: AlertRef | None) -> Language:
        """The language of replies about ``ref``: its receiver's."""
        if ref is None or ref.receiver not in self._config.receivers:
            return self.language
        return self._config.language_of(ref.receiver)

    def _log_silencer_error(self, user: str, ref: AlertRef | None, error: SilencerError) -> None:
        log.warning(
            "command_silencer_failed user=%s ref=%s reason=%s error=%s",
            user,
            ref.ref if ref is not None else None,
            error.kind.value,
            error,
        )

    def _receiver(self, ref: AlertRef) -> ReceiverConfig | None:
        return self._config.receivers.get(ref.receiver)

    def _silencer_for(self, ref: AlertRef) -> Silencer | None:
        name = silencer_for(self._config, ref.receiver, ref.source, ref.cluster)
        return self._silencers.get(name) if name else None

    # -- commands -----------------------------------------------------------

    async def _ack(
        self, user: str, ref_number: int | None, app: str | None
    ) -> tuple[Outcome, int | None, str | None]:
        ref = await self._resolve(user, ref_number)
        if isinstance(ref, Outcome):
            return ref, ref_number, None
        refused = await self._refused(user, ref, ActorKey.ACK, app)
        receiver = self._receiver(ref)
        if refused is not None or receiver is None:
            return refused or self._refusal(Refusal.RECEIVER_GONE, ref, ActorKey.ACK), ref.ref, None
        lang = self._lang(ref)
        if not ref.firing:
            return (
                failed(
                    pick(
                        lang,
                        f"#{ref.ref} {ref.title} 已恢复，无需确认。",
                        f"#{ref.ref} {ref.title} is resolved already.",
                    ),
                    "resolved",
                ),
                ref.ref,
                None,
            )
        now = self._clock()
        await self._state.set_ack(ref.ref, user, now)
        silence_id = None
        extra = ""
        if receiver.ack_silences:
            silencer = self._silencer_for(ref)
            if silencer is not None:
                step = self._config.commands.ack_silence_step
                try:
                    silence_id = await self._create_silence(silencer, ref, user, step, "ack", via_ack=True)
                    extra = pick(lang, "，并已静默直到恢复", ", silenced until it resolves")
                except SilencerError as exc:
                    self._log_silencer_error(user, ref, exc)
                    failure = silencer_failure(lang, exc)
                    extra = pick(lang, f"（静默失败：{failure}）", f" (silence failed: {failure})")
        label = pick(lang, f"已确认 · {user}", f"Acked · {user}")
        reply = pick(
            lang,
            f"已确认 #{ref.ref} {ref.title}（{len(ref.alerts)} 条告警）{extra}。恢复或变化前不再重复提醒。",
            f"Acknowledged #{ref.ref} {ref.title} ({len(ref.alerts)} alerts){extra}. No repeats until it resolves or changes.",
        )
        return Outcome(reply, label), ref.ref, silence_id

    async def _create_silence(
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

    async def _silence(
        self, user: str, ref_number: int, duration: timedelta, comment: str, app: str | None
    ) -> tuple[Outcome, int | None, str | None]:
        ref = await self._resolve(user, ref_number)
        if isinstance(ref, Outcome):
            return ref, ref_number, None
        refused = await self._refused(user, ref, ActorKey.SILENCE, app)
        if refused is not None:
            return refused, ref.ref, None
        lang = self._lang(ref)
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
        silencer = self._silencer_for(ref)
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
            silence_id = await self._create_silence(silencer, ref, user, duration, comment)
        except SilencerError as exc:
            self._log_silencer_error(user, ref, exc)
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

    async def _unsilence(
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
            found = await self._resolve(user, ref_number)
            if isinstance(found, Outcome):
                return found, ref_number, None
            ref = found
            targets = await self._state.silences_for_ref(ref.ref, active_at=now)
            if not targets:
                return (
                    failed(
                        pick(
                            self._lang(ref),
                            f"#{ref.ref} 没有生效中的静默。",
                            f"#{ref.ref} has no active silence.",
                        ),
                        "no_active_silence",
                    ),
                    ref.ref,
                    None,
                )
        ref_of = ref.ref if ref is not None else None
        lang = self._lang(ref)
        if ref is not None:
            refused = await self._refused(user, ref, ActorKey.SILENCE, app)
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
                self._log_silencer_error(user, ref, exc)
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

    def short_help(self) -> str:
        return self.t(
            "回复“确认 编号”确认告警，“静默 编号 2h”静默告警，“帮助”查看全部命令。",
            "Reply “ack <ref>” to acknowledge, “silence <ref> 2h” to silence, “help” for all commands.",
        )

    def help_text(self) -> str:
        max_silence = format_duration(self._config.commands.max_silence, self.language)
        limit = self.t(f"静默最长 {max_silence}", f"Longest silence: {max_silence}")
        return f"{help_text(self.language)}\n{limit}"
