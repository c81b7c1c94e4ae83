"""Carry out commands from WeCom users: authorize, act, audit, and say what happened.

Text replies and card buttons both end here, so authorization, counting and
the audit trail are the same whichever way a user asked. The executor runs
``ack`` itself; the silence commands live in ``commands.silences``, the
listings in ``commands.queries``, and the lookups and checks they share in
``commands.targets``. Every outcome is a short message for the user in the
configured language; nothing half-done is recorded as done (a silence is
recorded only after its silencer, Alertmanager or Grafana, created it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from alertbridge.commands import Ack, Command, Help, ListAlerts, ListSilences, Silence, Unsilence
from alertbridge.commands.authz import ActorKey, Authorizer, Directory, NoDirectory, Refusal
from alertbridge.commands.outcome import Outcome, failed
from alertbridge.commands.parser import help_text
from alertbridge.commands.queries import CommandQueries
from alertbridge.commands.silences import SilenceCommands
from alertbridge.commands.targets import CommandTargets
from alertbridge.commands.wording import pick, silencer_failure
from alertbridge.config import Config
from alertbridge.duration import format_duration
from alertbridge.errors import StoreError
from alertbridge.metrics import Metrics
from alertbridge.silencers import Silencer, SilencerError
from alertbridge.stores.state import AuditEntry, StateStore

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
        authorizer = Authorizer(config, directory if directory is not None else NoDirectory())
        self._metrics = metrics if metrics is not None else Metrics()
        self._state = state
        self._clock = clock
        self.language = config.server.language
        self._zh = self.language == "zh"
        self._queries = CommandQueries(config=config, state=state, authorizer=authorizer, clock=clock)
        self._targets = CommandTargets(config=config, state=state, authorizer=authorizer, silencers=silencers)
        self._silences = SilenceCommands(
            config=config, state=state, silencers=silencers, targets=self._targets, clock=clock
        )

    def t(self, zh: str, en: str) -> str:
        return zh if self._zh else en

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
                return await self._silences.silence(user, ref, duration, comment, app)
            case Unsilence(ref=ref, silence_id=silence_id):
                return await self._silences.unsilence(user, ref, silence_id, app)
            case ListAlerts():
                return await self._queries.alerts(user), None, None
            case ListSilences():
                return await self._queries.silences(user, app), None, None
            case Help():
                return Outcome(self.help_text()), None, None
        raise TypeError(f"unknown command {command!r}")

    # -- ack --------------------------------------------------------------

    async def _ack(
        self, user: str, ref_number: int | None, app: str | None
    ) -> tuple[Outcome, int | None, str | None]:
        ref = await self._targets.resolve(user, ref_number)
        if isinstance(ref, Outcome):
            return ref, ref_number, None
        refused = await self._targets.refused(user, ref, ActorKey.ACK, app)
        receiver = self._targets.receiver(ref)
        if refused is not None or receiver is None:
            return refused or self._targets.refusal(Refusal.RECEIVER_GONE, ref, ActorKey.ACK), ref.ref, None
        lang = self._targets.lang(ref)
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
            silencer = self._targets.silencer_for(ref)
            if silencer is not None:
                step = self._config.commands.ack_silence_step
                try:
                    silence_id = await self._silences.create(silencer, ref, user, step, "ack", via_ack=True)
                    extra = pick(lang, "，并已静默直到恢复", ", silenced until it resolves")
                except SilencerError as exc:
                    self._targets.log_silencer_error(user, ref, exc)
                    failure = silencer_failure(lang, exc)
                    extra = pick(lang, f"（静默失败：{failure}）", f" (silence failed: {failure})")
        label = pick(lang, f"已确认 · {user}", f"Acked · {user}")
        reply = pick(
            lang,
            f"已确认 #{ref.ref} {ref.title}（{len(ref.alerts)} 条告警）{extra}。恢复或变化前不再重复提醒。",
            f"Acknowledged #{ref.ref} {ref.title} ({len(ref.alerts)} alerts){extra}. No repeats until it resolves or changes.",
        )
        return Outcome(reply, label), ref.ref, silence_id

    def short_help(self) -> str:
        return self.t(
            "回复“确认 编号”确认告警，“静默 编号 2h”静默告警，“帮助”查看全部命令。",
            "Reply “ack <ref>” to acknowledge, “silence <ref> 2h” to silence, “help” for all commands.",
        )

    def help_text(self) -> str:
        max_silence = format_duration(self._config.commands.max_silence, self.language)
        limit = self.t(f"静默最长 {max_silence}", f"Longest silence: {max_silence}")
        return f"{help_text(self.language)}\n{limit}"
