"""The messengers, one place: one ``MessengerEntry`` per messenger.

An entry names the receiver config models the messenger owns (their
``channel`` kinds), its byte limits, how to build its ``Messenger`` and the
``Channel`` of one receiver. ``alertbridge.config`` validates receivers
against ``RECEIVER_MODELS`` and takes the messengers' own config sections
from ``MessengerSections``; the composition root builds ``Messengers`` and
channels with ``build_messengers`` / ``build_channels``. A messenger that is
not built in (a test's) is passed as ``extra`` entries, with its receiver
models given to ``load_config``/``parse_config``.

This module is imported by ``alertbridge.config``, so nothing it imports at
module level may import the config (directly or through the renderer): the
parts of WeCom that do (its ``Messenger``, its online checks) are imported
where they are built.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final, TextIO

from pydantic import Field, SecretStr

from alertbridge.config_base import ReceiverBase, Section
from alertbridge.errors import ConfigError
from alertbridge.images import ImageFetcher
from alertbridge.messengers import Channel, Messenger, Messengers
from alertbridge.messengers.console import (
    CONSOLE_BYTE_LIMITS,
    ConsoleChannel,
    ConsoleMessenger,
    ConsoleReceiver,
)
from alertbridge.messengers.wecom.app import AppChannel
from alertbridge.messengers.wecom.appchat import AppChatChannel
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import (
    AppChatReceiver,
    AppReceiver,
    RobotReceiver,
    WeComConfig,
    app_chat_receiver_problems,
    app_receiver_problems,
    robot_receiver_problems,
    wecom_problems,
)
from alertbridge.messengers.wecom.limits import WECOM_BYTE_LIMITS
from alertbridge.messengers.wecom.robot import RobotChannel
from alertbridge.metrics import Metrics

if TYPE_CHECKING:
    from alertbridge.config import Config
    from alertbridge.online_check import MessengerChecks
    from alertbridge.stores.state import StateStore


@dataclass(frozen=True, slots=True)
class MessengerDeps:
    """What building a messenger or a channel may use; each takes what it needs."""

    config: Config
    # WeCom's, shared with its callback and contact lookups; None: composing only
    # (``render``), where no channel is built.
    client: WeComClient | None
    out: TextIO  # where the console prints
    images: ImageFetcher | None = None  # alert images, for receivers with images = true
    metrics: Metrics | None = None


@dataclass(frozen=True, slots=True)
class MessengerEntry:
    """One messenger in the registry."""

    receivers: tuple[type[ReceiverBase], ...]  # the receiver models it owns
    byte_limits: Mapping[tuple[str, str], int]
    # state: references, cards …; None for a messenger that only composes (previews)
    build: Callable[[MessengerDeps, StateStore | None], Messenger]
    channel: Callable[[str, ReceiverBase, MessengerDeps], Channel]  # (receiver name, its config, deps)


def _wecom_messenger(deps: MessengerDeps, state: StateStore | None) -> Messenger:
    # Imported here: it renders cards, and the renderer imports the config.
    from alertbridge.messengers.wecom.messenger import WeComMessenger

    return WeComMessenger(config=deps.config, client=deps.client, state=state)


def _wecom_channel(name: str, receiver: ReceiverBase, deps: MessengerDeps) -> Channel:
    """Raises ``ConfigError`` when an app receiver names an app missing from
    ``[wecom.apps]`` (the config loader already rejects that; this guards other callers)."""
    wecom = deps.config.wecom
    if deps.client is None:
        raise TypeError("a WeCom channel needs the WeCom client")
    if isinstance(receiver, AppReceiver):
        if receiver.app not in wecom.apps:
            raise ConfigError(
                "config", [(f"receivers.{name}.app", f"no app {receiver.app!r} in [wecom.apps]")]
            )
        return AppChannel(
            deps.client,
            receiver.app,
            wecom.apps[receiver.app],
            images=deps.images,
            duplicate_check_interval=deps.config.delivery.duplicate_check_interval,
            metrics=deps.metrics,
        )
    if isinstance(receiver, AppChatReceiver):
        if receiver.app not in wecom.apps:
            raise ConfigError(
                "config", [(f"receivers.{name}.app", f"no app {receiver.app!r} in [wecom.apps]")]
            )
        return AppChatChannel(
            deps.client,
            receiver.app,
            wecom.apps[receiver.app],
            receiver.chatid,
            images=deps.images,
            metrics=deps.metrics,
        )
    if isinstance(receiver, RobotReceiver):
        return RobotChannel(deps.client, receiver.robot_key, images=deps.images, metrics=deps.metrics)
    raise TypeError(f"not a WeCom receiver: {type(receiver).__name__}")


WECOM: Final = MessengerEntry(
    receivers=(AppReceiver, AppChatReceiver, RobotReceiver),
    byte_limits=WECOM_BYTE_LIMITS,
    build=_wecom_messenger,
    channel=_wecom_channel,
)
CONSOLE: Final = MessengerEntry(
    receivers=(ConsoleReceiver,),
    byte_limits=CONSOLE_BYTE_LIMITS,
    build=lambda deps, state: ConsoleMessenger(),
    channel=lambda name, receiver, deps: ConsoleChannel(deps.out, name),
)
# Every built-in messenger; the order is the order `channel` kinds are listed in errors.
MESSENGERS: Final[tuple[MessengerEntry, ...]] = (WECOM, CONSOLE)
RECEIVER_MODELS: Final = tuple(model for entry in MESSENGERS for model in entry.receivers)
BYTE_LIMITS: Final = {key: limit for entry in MESSENGERS for key, limit in entry.byte_limits.items()}


def receiver_models(extra: Sequence[MessengerEntry] = ()) -> tuple[type[ReceiverBase], ...]:
    """The receiver models a config may use: the built-in ones and ``extra`` messengers'."""
    return (*RECEIVER_MODELS, *(model for entry in extra for model in entry.receivers))


def byte_limit(channel: str, msgtype: str) -> int:
    """The most UTF-8 bytes of one built-in ``channel`` message's content."""
    return BYTE_LIMITS[(channel, msgtype)]


def receiver_kinds(models: Sequence[type[ReceiverBase]]) -> tuple[str, ...]:
    """The ``channel`` kinds of receiver models (each narrows ``channel`` to a Literal)."""
    return tuple(
        kind for model in models for kind in typing.get_args(model.model_fields["channel"].annotation)
    )


class MessengerSections(Section):
    """The messengers' own config sections (``[wecom]``), as ``Config`` has them."""

    wecom: WeComConfig = Field(default_factory=WeComConfig)

    def messenger_secrets(self) -> list[SecretStr]:
        return list(self.wecom.secrets())

    @property
    def send_timeout(self) -> timedelta:
        """The longest a messenger may take to answer a send (WeCom's ``timeout``):
        a send reserved before a crash was counted at most this much later."""
        return self.wecom.timeout

    def hears_replies(self, receiver: ReceiverBase) -> bool:
        """Whether replies to ``receiver``'s messages reach alertbridge: its
        ``reply_app`` exists and has its callback configured."""
        app = self.wecom.apps.get(receiver.reply_app) if receiver.reply_app is not None else None
        return app is not None and app.callback_enabled

    def section_problems(self) -> list[tuple[str, str]]:
        """What is wrong across the keys of the sections, as (key path, reason)."""
        return wecom_problems(self.wecom)

    def receiver_problems(self, key: str, receiver: ReceiverBase) -> list[tuple[str, str]]:
        """What is wrong with receiver ``key`` given the sections it uses."""
        if isinstance(receiver, AppReceiver):
            return app_receiver_problems(key, receiver, self.wecom)
        if isinstance(receiver, AppChatReceiver):
            return app_chat_receiver_problems(key, receiver, self.wecom)
        if isinstance(receiver, RobotReceiver):
            return robot_receiver_problems(key, receiver)
        return []


def build_messengers(
    deps: MessengerDeps, state: StateStore | None, extra: Sequence[MessengerEntry] = ()
) -> Messengers:
    """Every messenger, built-in and ``extra``. Without a state store (and a
    client in ``deps``) they only compose: ``render`` and ``send-test`` previews."""
    return Messengers(entry.build(deps, state) for entry in (*MESSENGERS, *extra))


def build_channel(
    name: str, receiver: ReceiverBase, deps: MessengerDeps, extra: Sequence[MessengerEntry] = ()
) -> Channel:
    """The channel that delivers receiver ``name``'s messages.

    Raises:
        ConfigError: it names something its messenger's section lacks.
        KeyError: no messenger owns its ``channel`` kind.
    """
    for entry in (*MESSENGERS, *extra):
        if isinstance(receiver, entry.receivers):
            return entry.channel(name, receiver, deps)
    raise KeyError(receiver.channel)


def build_channels(deps: MessengerDeps, extra: Sequence[MessengerEntry] = ()) -> dict[str, Channel]:
    """The channel of every configured receiver."""
    return {
        name: build_channel(name, receiver, deps, extra) for name, receiver in deps.config.receivers.items()
    }


def online_checks() -> tuple[MessengerChecks, ...]:
    """``check-config --online``: each messenger's checks, in the order they run."""
    # Imported here: the checks read the config, which imports this module.
    from alertbridge.messengers.wecom.online_check import wecom_checks

    return (wecom_checks,)
