"""What alertbridge says to one authenticated, first-seen callback message.

Texts are commands; images, voices, videos and files are kept in the audit
trail (``inbound_media``); menu clicks are the commands ``menu_commands`` maps their
keys to; card button clicks are the commands their keys encode; ``subscribe``
and ``enter_agent`` (at most daily per member) get the help. Every event is
counted by type in /metrics. The result is an ``Answer``: ``WeComCallback``
decides whether it goes back passively or, when it came too late, actively.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from alertbridge.commands import Command, CommandError, Help
from alertbridge.commands.executor import CommandExecutor
from alertbridge.commands.parser import parse_button_key, parse_command
from alertbridge.config import Config
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.inbound import EventMessage, InboundMessage, MediaMessage, TextMessage
from alertbridge.messengers.wecom.inbound_media import keep_inbound_media
from alertbridge.messengers.wecom.passive import NOTHING, Answer
from alertbridge.metrics import Metrics
from alertbridge.stores.state import StateStore

log = logging.getLogger(__name__)

# enter_agent fires whenever a member opens the app: greet at most daily.
GREETING_INTERVAL = timedelta(days=1)

# The event types WeCom documents for a self-built app (docs §3.2); any other
# is counted as "other", so a sender cannot grow the metric's label set.
KNOWN_EVENTS: Final = frozenset(
    {
        "subscribe",
        "unsubscribe",
        "enter_agent",
        "click",
        "view",
        "location",
        "location_select",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "view_miniprogram",
        "template_card_event",
        "template_card_menu_event",
        "taskcard_click",
        "batch_job_result",
        "change_contact",
        "open_approval_change",
    }
)


class CallbackAnswers:
    """Runs what a callback asks for and returns what to say."""

    def __init__(
        self,
        *,
        config: Config,
        state: StateStore,
        executor: CommandExecutor,
        client: WeComClient,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._state = state
        self._executor = executor
        self._client = client
        self._metrics = metrics
        self._clock = clock

    def working(self) -> str:
        """The passive answer while a command is still running past the reply budget."""
        return self._executor.t("正在处理，结果稍后发送。", "Working on it; the result follows in a moment.")

    async def answer(self, app_name: str, app: WeComAppConfig, message: InboundMessage) -> Answer:
        user = message.from_user
        if isinstance(message, TextMessage):
            return await self._run_text(app_name, user, message.content)
        if isinstance(message, MediaMessage):
            reply = await keep_inbound_media(
                message,
                app_name=app_name,
                app=app,
                client=self._client,
                state=self._state,
                max_bytes=self._config.wecom.inbound_media_max_bytes,
                now=self._clock,
                language=self._executor.language,
            )
            return Answer(reply)
        if not isinstance(message, EventMessage):
            return Answer(
                self._executor.t(
                    "暂不支持这种消息；发送“帮助”查看可用命令。",
                    "This kind of message is not supported; send “help” for commands.",
                )
            )
        event = message.event
        self._metrics.callback_events.labels(event if event in KNOWN_EVENTS else "other").inc()
        if event == "subscribe":
            return Answer(self._executor.help_text())
        if event == "enter_agent":
            if await self._state.claim_callback(f"greet:{app_name}:{user}", self._clock(), GREETING_INTERVAL):
                return Answer(self._executor.help_text())
            return NOTHING
        if event == "click":
            key = message.event_key
            # A key the config does not map is tried as a command itself
            # (a menu made by hand in the WeCom console with key "alerts").
            return await self._run_text(app_name, user, app.menu_commands.get(key, key))
        if event == "template_card_event":
            return await self._run_button(app_name, message)
        log.debug("callback_event_ignored app=%s event=%s", app_name, event[:64])
        return NOTHING

    async def _run_text(self, app_name: str, user: str, text: str) -> Answer:
        try:
            command: Command = parse_command(text, max_silence=self._config.commands.max_silence)
        except CommandError as exc:
            return Answer(exc.message(self._executor.language))
        outcome = await self._executor.execute(user, command, action=_action(command), app=app_name)
        return Answer(outcome.reply)

    async def _run_button(self, app_name: str, event: EventMessage) -> Answer:
        try:
            command = parse_button_key(event.event_key, max_silence=self._config.commands.max_silence)
        except CommandError:
            log.warning("callback_unknown_button app=%s key=%r", app_name, event.event_key[:64])
            return NOTHING
        if isinstance(command, Help):
            return NOTHING
        outcome = await self._executor.execute(
            event.from_user, command, action=f"button:{_action(command)}", app=app_name
        )
        label = outcome.card_label if outcome.ok else None
        return Answer(outcome.reply, label)


def _action(command: Command) -> str:
    return type(command).__name__.lower()
