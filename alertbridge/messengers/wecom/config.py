"""The WeCom messenger's config: the ``[wecom]`` section and the ``app``,
``appchat`` and ``robot`` receivers, composed into ``alertbridge.config.Config``.

It builds on ``alertbridge.config_base`` only (never on ``alertbridge.config``),
so the core config can import it without a cycle.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from alertbridge.config_base import (
    NAME,
    ReceiverBase,
    ResolveMode,
    Section,
    duration_value,
    secret_not_empty,
)
from alertbridge.message import Recipients
from alertbridge.messengers.wecom.mentions import app_recipients, robot_recipients
from alertbridge.messengers.wecom.menu import check_menu_commands
from alertbridge.model import AlertGroup

# What each channel can send (docs §4.3, §5). ``image``/``file`` attachments
# are not a receiver's msgtype: they follow a message.
AppMessageType = Literal["text", "markdown", "textcard", "news", "template_card"]
AppChatMessageType = Literal["text", "markdown", "textcard", "news"]  # appchat/send: no template card
RobotMessageType = Literal["text", "markdown", "markdown_v2", "news", "template_card"]
# A template card's type: ``button_interaction`` (buttons that call back, apps
# only) or a card without commands, ``text_notice`` / ``news_notice`` (the
# alert image on top; a group without one gets a text_notice).
CardType = Literal["button_interaction", "text_notice", "news_notice"]
NOTICE_CARD_TYPES = ("text_notice", "news_notice")
# Msgtypes whose body is a JSON section built around (or instead of) rendered content.
STRUCTURED_MSGTYPES = ("textcard", "news", "template_card")


class WeComAppConfig(Section):
    corp_id: str = Field(min_length=1)
    agent_id: int = Field(gt=0)
    secret: SecretStr
    # The app's "接收消息" callback settings; without them /wecom/callback/<app>
    # answers 404 and replies/buttons are not available.
    token: SecretStr | None = None
    encoding_aes_key: SecretStr | None = None
    # Callbacks whose timestamp is further than this from our clock are
    # rejected (replays). 0 disables the check, e.g. to replay WeCom's examples.
    callback_max_skew_seconds: int = Field(default=300, ge=0)
    # WeCom silently drops an app's messages to a member beyond 30 a minute
    # and 1000 an hour; the dispatcher keeps under these (lower only).
    rate_limit_per_minute: int = Field(default=30, ge=1, le=30)
    rate_limit_per_hour: int = Field(default=1000, ge=1, le=1000)
    # How long a callback waits for its command before answering "working on
    # it" passively and sending the result later (WeCom gives up after 5 s).
    callback_reply_budget: Annotated[timedelta, Field(gt=timedelta(0), le=timedelta(seconds=4))] = timedelta(
        seconds=2.5
    )
    # The app's menu: button name (also its click key) → the command it runs,
    # e.g. {"告警" = "alerts"}; `alertbridge menu install` uploads it.
    menu_commands: dict[str, str] = Field(default_factory=dict)

    _non_empty = field_validator("secret")(secret_not_empty)
    _parse_budget = field_validator("callback_reply_budget", mode="before")(duration_value)

    @field_validator("menu_commands")
    @classmethod
    def _check_menu(cls, value: dict[str, str]) -> dict[str, str]:
        return check_menu_commands(value)

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{1,32}", value.get_secret_value()):
            raise ValueError("must be 1-32 letters or digits (as the WeCom console generates it)")
        return value

    @field_validator("encoding_aes_key")
    @classmethod
    def _check_aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        key = value.get_secret_value()
        if len(key) != 43 or not re.fullmatch(r"[A-Za-z0-9]{43}", key):
            raise ValueError(
                "must be exactly 43 letters or digits (the EncodingAESKey from the WeCom console)"
            )
        try:
            decoded = base64.b64decode(key + "=", validate=True)
        except binascii.Error:
            raise ValueError("is not valid base64") from None
        if len(decoded) != 32:
            raise ValueError("does not decode to a 32-byte AES key")
        return value

    @property
    def callback_enabled(self) -> bool:
        return self.token is not None and self.encoding_aes_key is not None


class WeComConfig(Section):
    api_base: str = "https://qyapi.weixin.qq.com"
    timeout: Annotated[timedelta, Field(gt=timedelta(0))] = timedelta(seconds=10)
    apps: dict[str, WeComAppConfig] = Field(default_factory=dict)
    # Images, voices, videos and files members send to an app are fetched
    # (media/get) and kept in the audit trail up to this size; 0 keeps none.
    inbound_media_max_bytes: int = Field(default=20 * 1024 * 1024, ge=0, le=20 * 1024 * 1024)

    _parse_timeout = field_validator("timeout", mode="before")(duration_value)

    @field_validator("api_base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    def secrets(self) -> list[SecretStr]:
        """The apps' secrets, for ``Config.secrets`` (log redaction)."""
        return [
            secret
            for app in self.apps.values()
            for secret in (app.secret, app.token, app.encoding_aes_key)
            if secret is not None
        ]


class MentionConfig(Section):
    """Who an alert concerns, from its labels: for robot @mentions and extra app recipients.

    The value of the first of ``keys`` (label, else annotation) an alert has
    is looked up in ``users`` / ``mobiles``; ``static_*`` always apply.
    """

    keys: list[str] = Field(default_factory=list)
    users: dict[str, list[str]] = Field(default_factory=dict)
    mobiles: dict[str, list[str]] = Field(default_factory=dict)
    static_users: list[str] = Field(default_factory=list)
    static_mobiles: list[str] = Field(default_factory=list)
    all: bool = False  # @all (robots only)


class ButtonConfig(Section):
    """One card button: an action with its label."""

    action: Literal["ack", "silence"]
    # None: "确认" / "静默1小时" (or "Ack" / "Silence 1h"), in the receiver's language.
    text: str | None = Field(default=None, min_length=1, max_length=12)
    duration: timedelta | None = None  # for silence

    _parse = field_validator("duration", mode="before")(duration_value)


def _default_buttons() -> list[ButtonConfig]:
    return [
        ButtonConfig(action="ack"),
        ButtonConfig(action="silence", duration=timedelta(hours=1)),
        ButtonConfig(action="silence", duration=timedelta(hours=24)),
    ]


# Files posted after one message at most (each is a message in the member's budget).
MAX_ATTACHED_FILES = 3


class WeComReceiver(ReceiverBase):
    """What app, appchat and robot receivers share: their msgtypes' fallbacks and attached files."""

    # Annotations whose http(s) URL names a file (a report, a log) to post as a
    # `file` message after the text: fetched under the [images] rules, at most
    # 20 MB, the first MAX_ATTACHED_FILES distinct URLs of the firing alerts.
    attach_files: list[str] = Field(default_factory=list)

    def attachment_urls(self, group: AlertGroup) -> tuple[str, ...]:
        urls: list[str] = []
        for alert in group.firing:
            for name in self.attach_files:
                url = alert.annotations.get(name, "").strip()
                if url and url not in urls:
                    urls.append(url)
        return tuple(urls[:MAX_ATTACHED_FILES])

    @property
    def rendered_msgtype(self) -> str:
        # Cards render through markdown what a card cannot show (a resolution
        # whose card can no longer change, a group without a link).
        return "markdown" if self.msgtype == "template_card" else self.msgtype  # type: ignore[comparison-overlap]

    @property
    def digest_msgtype(self) -> str:
        # A digest lists many groups: cards and articles cannot, markdown can.
        return "markdown" if self.msgtype in STRUCTURED_MSGTYPES else self.msgtype


class CardReceiver(WeComReceiver):
    """App and robot receivers: they can send template cards."""

    card_type: CardType = "text_notice"  # for msgtype = "template_card"

    @property
    def notice_cards(self) -> bool:
        """Sends cards without commands, for firing and resolved groups alike."""
        return self.msgtype == "template_card" and self.card_type in NOTICE_CARD_TYPES  # type: ignore[comparison-overlap]


class AppReceiver(CardReceiver):
    channel: Literal["app"]
    msgtype: AppMessageType = "markdown"  # type: ignore[assignment]
    card_type: CardType = "button_interaction"
    app: str
    to_user: list[str] = Field(default_factory=list)
    to_party: list[str] = Field(default_factory=list)
    to_tag: list[str] = Field(default_factory=list)
    # Buttons of msgtype = "template_card" messages (at most 6).
    buttons: list[ButtonConfig] = Field(default_factory=_default_buttons, max_length=6)
    # Per-alert recipients from labels, added to to_user.
    extra_recipients: MentionConfig | None = None

    def recipients_for(self, group: AlertGroup) -> Recipients:
        return app_recipients(self, group)

    @property
    def reply_app(self) -> str | None:
        return self.app

    @property
    def named_users(self) -> tuple[str, ...]:
        return tuple(user for user in self.to_user if user != "@all")

    def named_recipients(self, recipients: Recipients) -> tuple[str, ...]:
        return tuple(user for user in recipients.to_user if user != "@all")

    @property
    def audience_listed(self) -> bool:
        return bool(self.to_user) and "@all" not in self.to_user and not self.to_party and not self.to_tag

    @property
    def resolve_modes(self) -> tuple[ResolveMode, ...]:
        # message/send answers a msgid (recall, within 24 h); only a card
        # with buttons can be edited (update_template_card).
        if self.msgtype == "template_card":
            return ("update", "new", "recall")
        return ("new", "recall")

    def audience_listed_for(self, recipients: Recipients) -> bool:
        return "@all" not in recipients.to_user and not recipients.to_party and not recipients.to_tag

    @property
    def audience(self) -> tuple[str, str]:
        if "@all" in self.to_user:
            return "全员（@all）", "everyone (@all)"
        return "部门或标签", "a department or tag"


class AppChatReceiver(WeComReceiver):
    """A group chat the app created (``alertbridge appchat create``): messages
    carry the app's identity and are not held to a robot's 20 a minute. Each
    chat member receives at most 200 a minute and 10,000 a day from one app
    (``limits.appchat_limits``). appchat/send answers no msgid and cannot
    send a template card, so only ``on_resolve = "new"`` is possible."""

    channel: Literal["appchat"]
    msgtype: AppChatMessageType = "markdown"  # type: ignore[assignment]
    app: str
    chatid: str = Field(pattern=r"^[0-9A-Za-z]{1,32}$")

    @property
    def audience(self) -> tuple[str, str]:
        return "应用群聊", "an app group chat"

    @property
    def reply_app(self) -> str | None:
        # Whether WeCom calls the app back for messages in its chats is not
        # documented; if it does, they are handled like any other (README).
        return self.app


class RobotReceiver(CardReceiver):
    channel: Literal["robot"]
    # A robot's template_card is a notice card: it cannot call back
    # (card_type = "button_interaction" is refused with a clear message).
    msgtype: RobotMessageType = "markdown"  # type: ignore[assignment]
    robot_key: SecretStr
    mention: MentionConfig | None = None
    # A robot accepts 20 messages a minute (then 45009); lower only. Receivers
    # sharing a robot key share its budget at the lowest of their limits.
    rate_limit_per_minute: int = Field(default=20, ge=1, le=20)

    _non_empty = field_validator("robot_key")(secret_not_empty)

    def channel_secrets(self) -> list[SecretStr]:
        return [self.robot_key]

    def recipients_for(self, group: AlertGroup) -> Recipients:
        return robot_recipients(self, group)

    @property
    def audience(self) -> tuple[str, str]:
        return "群机器人", "a group robot"


def wecom_problems(wecom: WeComConfig) -> list[tuple[str, str]]:
    """What is wrong across the keys of ``[wecom.apps]``, as (key path, reason)."""
    problems: list[tuple[str, str]] = []
    for name, app in wecom.apps.items():
        if not NAME.match(name):
            problems.append((f"wecom.apps.{name}", "app names may use letters, digits, _ . -"))
        if (app.token is None) != (app.encoding_aes_key is None):
            problems.append(
                (
                    f"wecom.apps.{name}",
                    "set both token and encoding_aes_key (the callback settings), or neither",
                )
            )
    return problems


def app_chat_receiver_problems(
    key: str, receiver: AppChatReceiver, wecom: WeComConfig
) -> list[tuple[str, str]]:
    """What is wrong with appchat receiver ``key`` given ``[wecom]``, as (key path, reason)."""
    problems: list[tuple[str, str]] = []
    if receiver.app not in wecom.apps:
        known = ", ".join(sorted(wecom.apps)) or "none defined"
        problems.append((f"{key}.app", f"no app {receiver.app!r} in [wecom.apps] ({known})"))
    return problems


def app_receiver_problems(key: str, receiver: AppReceiver, wecom: WeComConfig) -> list[tuple[str, str]]:
    """What is wrong with app receiver ``key`` given ``[wecom]``, as (key path, reason)."""
    problems: list[tuple[str, str]] = []
    if receiver.msgtype == "template_card" and receiver.card_type == "button_interaction":
        app_config = wecom.apps.get(receiver.app)
        if app_config is not None and not app_config.callback_enabled:
            problems.append(
                (
                    f"{key}.msgtype",
                    f"template_card buttons call back: set token and encoding_aes_key of "
                    f"[wecom.apps.{receiver.app}]",
                )
            )
        for index, button in enumerate(receiver.buttons):
            if button.action == "silence" and button.duration is None:
                problems.append((f"{key}.buttons[{index}].duration", "a silence button needs a duration"))
    if receiver.app not in wecom.apps:
        known = ", ".join(sorted(wecom.apps)) or "none defined"
        problems.append((f"{key}.app", f"no app {receiver.app!r} in [wecom.apps] ({known})"))
    if not (receiver.to_user or receiver.to_party or receiver.to_tag):
        problems.append((key, "an app receiver needs at least one of to_user, to_party, to_tag"))
    return problems


def robot_receiver_problems(key: str, receiver: RobotReceiver) -> list[tuple[str, str]]:
    """What is wrong with robot receiver ``key``, as (key path, reason)."""
    if receiver.msgtype == "template_card" and receiver.card_type not in NOTICE_CARD_TYPES:
        return [
            (
                f"{key}.card_type",
                f"a group robot cannot call back, so it sends no {receiver.card_type} cards: "
                f"use {' or '.join(NOTICE_CARD_TYPES)}",
            )
        ]
    return []
