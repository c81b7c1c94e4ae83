"""Who may act on an alert: the ``allow_ack`` / ``allow_silence`` rules.

References are small sequential numbers anyone can guess, so a command is
allowed only to people we know should act on that alert:

- ``"recipients"`` (the default) means the users the alert was sent to *by
  name* — the ``to_user`` ids of an app message. Robots, the console,
  ``to_party``, ``to_tag`` and ``@all`` reach people alertbridge cannot list
  member by member, so for them the default allows **nobody**: an operator
  names who may act in an allow-list (``check-config`` warns until then).
- An allow-list holds user ids and ``party:<id>`` / ``tag:<id>`` entries.
  Departments and tags are resolved through WeCom's contact API
  (a ``Directory``, the WeCom messenger's contacts module); an entry that cannot be resolved — the app lacks
  contact permission (48002) or the entry is outside its visible range
  (60011), or WeCom is unreachable — matches nobody, and a warning names it.

A refusal is typed (``Refusal``) so the audit row and the log line carry the
reason, and ``refusal_text`` tells the user who may act and which key an
operator sets to change it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from alertbridge.config import Config, ReceiverConfig
from alertbridge.config_base import Actors
from alertbridge.message import Recipients

log = logging.getLogger(__name__)

_SHOWN_NAMES = 5  # allow-list entries quoted in a refusal


class ActorKey(StrEnum):
    """The receiver key that decides who may run a command."""

    ACK = "allow_ack"
    SILENCE = "allow_silence"  # silence and unsilence


class Refusal(StrEnum):
    """Why a command was refused; short fixed words for the audit trail, logs and metrics."""

    RECEIVER_GONE = "receiver_gone"  # the alert's receiver is no longer configured
    NOT_A_RECIPIENT = "not_a_recipient"  # "recipients", and the user was not one of them
    AUDIENCE_UNKNOWN = "audience_unknown"  # "recipients" of a robot/console/party/tag/@all alert
    NOT_IN_ALLOW_LIST = "not_in_allow_list"
    NOT_THE_CREATOR = "not_the_creator"  # a silence without a reference: only its creator


class ContactUnavailable(Exception):
    """A department or tag could not be resolved; ``reason`` is a short word for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GroupMembers(Protocol):
    """A tag's members: user ids (lower-cased) and the departments tagged as a whole."""

    @property
    def users(self) -> frozenset[str]: ...

    @property
    def parties(self) -> frozenset[str]: ...


class Directory(Protocol):
    """Departments of a user and members of a tag, asked through an app (the
    messenger's contact directory, e.g. WeCom's contacts module)."""

    async def departments(self, config: Config, app_name: str, user: str) -> frozenset[str]:
        """The user's department ids. Raises ``ContactUnavailable``."""
        ...

    async def tag(self, config: Config, app_name: str, tag_id: str) -> GroupMembers:
        """The tag's users and departments. Raises ``ContactUnavailable``."""
        ...


class NoDirectory:
    """A directory without a messenger client: every department or tag is unresolved."""

    async def departments(self, config: Config, app_name: str, user: str) -> frozenset[str]:
        raise ContactUnavailable("no_wecom_client")

    async def tag(self, config: Config, app_name: str, tag_id: str) -> GroupMembers:
        raise ContactUnavailable("no_wecom_client")


class Authorizer:
    """Decides whether a user may run a command on a reference."""

    def __init__(self, config: Config, directory: Directory) -> None:
        self._config = config
        self._directory = directory

    async def check(
        self,
        user: str,
        receiver_name: str,
        recipients: Recipients,
        key: ActorKey,
        *,
        via_app: str | None,
    ) -> Refusal | None:
        """None when ``user`` may act on alerts of ``receiver_name`` sent to ``recipients``."""
        receiver = self._config.receivers.get(receiver_name)
        if receiver is None:
            return Refusal.RECEIVER_GONE
        allow: Actors = getattr(receiver, key.value)
        folded = user.casefold()
        if allow == "recipients":
            if folded in {u.casefold() for u in receiver.named_recipients(recipients)}:
                return None
            if receiver.audience_listed_for(recipients):
                return Refusal.NOT_A_RECIPIENT
            return Refusal.AUDIENCE_UNKNOWN
        assert isinstance(allow, list)
        if await self._in_allow_list(folded, allow, receiver_name, receiver, key, via_app):
            return None
        return Refusal.NOT_IN_ALLOW_LIST

    async def _in_allow_list(
        self,
        user: str,
        allow: Sequence[str],
        receiver_name: str,
        receiver: ReceiverConfig,
        key: ActorKey,
        via_app: str | None,
    ) -> bool:
        if user in {entry.casefold() for entry in allow if ":" not in entry}:
            return True
        entries = [entry for entry in allow if entry.startswith(("party:", "tag:"))]
        if not entries:
            return False
        app_name = self._app_for(receiver, via_app)
        departments: frozenset[str] | None = None
        for entry in entries:
            kind, _, entry_id = entry.partition(":")
            try:
                if app_name is None:
                    raise ContactUnavailable("no_wecom_app")
                if kind == "tag":
                    members = await self._directory.tag(self._config, app_name, entry_id)
                    if user in members.users:
                        return True
                    wanted = members.parties  # a tagged department tags its members
                else:
                    wanted = frozenset({entry_id})
                if wanted:
                    if departments is None:
                        departments = await self._directory.departments(self._config, app_name, user)
                    if departments & wanted:
                        return True
            except ContactUnavailable as exc:
                log.warning(
                    "command_allow_entry_unresolved receiver=%s key=%s entry=%s reason=%s: "
                    "the entry matches nobody; give the WeCom app contact read permission and put "
                    "the department or tag into its visible range, or list user ids instead",
                    receiver_name,
                    key.value,
                    entry,
                    exc.reason,
                )
        return False

    @staticmethod
    def _app_for(receiver: ReceiverConfig, via_app: str | None) -> str | None:
        """The app to ask the directory with: the one the command came through,
        else the receiver's (the directory refuses an app it does not know)."""
        return via_app if via_app is not None else receiver.reply_app


def refusal_text(
    config: Config, refusal: Refusal, *, ref: int, receiver_name: str, recipients: Recipients, key: ActorKey
) -> str:
    """The reply to a refused command, in the receiver's language: who may act, and the key that says so."""
    receiver = config.receivers.get(receiver_name)
    zh = (receiver.language if receiver is not None and receiver.language else config.server.language) == "zh"
    setting = f"receivers.{receiver_name}.{key.value}"
    verb = ("确认", "ack") if key is ActorKey.ACK else ("静默", "silence")
    head = f"无权{verb[0]}告警 #{ref}：" if zh else f"Not allowed to {verb[1]} alert #{ref}: "
    if refusal is Refusal.RECEIVER_GONE or receiver is None:
        return head + (
            f"它的接收器 {receiver_name} 已不在配置中（{setting}）。"
            if zh
            else f"its receiver {receiver_name} is no longer configured ({setting})."
        )
    if refusal is Refusal.NOT_IN_ALLOW_LIST:
        allowed = _names(getattr(receiver, key.value))
        return head + (
            f"只有 {setting} 中的成员可以操作（{allowed}）。"
            if zh
            else f"only those listed in {setting} may ({allowed})."
        )
    named = receiver.named_recipients(recipients)
    if refusal is Refusal.NOT_A_RECIPIENT:
        return head + (
            f"只有收到它的成员可以操作（{_names(named)}）；如需他人操作，请管理员设置 {setting}。"
            if zh
            else f"only its recipients may ({_names(named)}); an admin can name others in {setting}."
        )
    where_zh, where_en = receiver.audience
    who_zh = f"只有 {_names(named)} 可以操作" if named else "默认无人可以操作"
    who_en = f"only {_names(named)} may act" if named else "nobody may act by default"
    return head + (
        f"它发往{where_zh}，无法逐一确认收件人，{who_zh}。请管理员在 {setting} 中列出可操作的成员"
        "（用户ID、party:部门ID 或 tag:标签ID）。"
        if zh
        else f"it went to {where_en}, whose members cannot be known one by one, so {who_en}. "
        f"An admin can list who may in {setting} (user ids, party:<id> or tag:<id>)."
    )


def _names(names: Sequence[str] | str) -> str:
    if isinstance(names, str):
        return names
    shown = ", ".join(names[:_SHOWN_NAMES])
    return shown + (" …" if len(names) > _SHOWN_NAMES else "")


def command_warnings(config: Config) -> list[tuple[str, str]]:
    """``(key, warning)`` for receivers whose alerts nobody may act on although
    they have a silencer or ``ack_silences``: the audience is not known member by member."""
    warnings: list[tuple[str, str]] = []
    for name, receiver in config.receivers.items():
        if receiver.audience_listed:
            continue
        where = receiver.audience[1]
        if config.silencer_of(name) is not None and receiver.allow_silence == "recipients":
            warnings.append(
                (
                    f"receivers.{name}.allow_silence",
                    f"its alerts go to {where}, whose members alertbridge cannot know: nobody may "
                    "silence them until allow_silence lists user ids, party:<id> or tag:<id>",
                )
            )
        if receiver.ack_silences and receiver.allow_ack == "recipients":
            warnings.append(
                (
                    f"receivers.{name}.allow_ack",
                    f"ack_silences is set but its alerts go to {where}: nobody may ack them until "
                    "allow_ack lists user ids, party:<id> or tag:<id>",
                )
            )
    return warnings
