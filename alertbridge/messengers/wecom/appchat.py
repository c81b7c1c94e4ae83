"""The ``appchat`` channel: the app posts into a group chat it created
(``appchat/send``, docs §6), with the app's identity and without a robot's
20 messages a minute.

WeCom delivers at most 200 messages a minute and 10,000 a day from one app
to each chat member and silently drops the rest, so the budget counts every
chat message against each member (``limits.appchat_limits``). The members
come from ``appchat/get``, kept by ``ChatMembers`` for ``MEMBERS_TTL``; the
budget is a synchronous question, so the lookup runs after a send
(``WeComMessenger.after_sent``) and until the first one answers only the
chat's own key counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from alertbridge.errors import DeliveryError, PermanentDeliveryError
from alertbridge.images import ImageFetcher
from alertbridge.message import Recipients, RenderedMessage
from alertbridge.messengers import Receipt
from alertbridge.messengers.wecom.app import AppChannel, message_fields
from alertbridge.messengers.wecom.client import WeComClient
from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.media_rules import MediaKind
from alertbridge.metrics import Metrics

log = logging.getLogger(__name__)

# The msgtypes appchat/send documents: no template_card.
APPCHAT_MSGTYPES: Final = frozenset(
    {"text", "image", "voice", "video", "file", "textcard", "news", "mpnews", "markdown"}
)
# How long a chat's member list is trusted before appchat/get is asked again.
MEMBERS_TTL: Final = timedelta(minutes=10)


class AppChatChannel(AppChannel):
    """Sends into one group chat through one configured WeCom app.

    An ``AppChannel`` whose messages go to a chat: text cards and news are
    dressed as for app receivers, and images and ``attach_files`` follow the
    message by media_id the same way (``appchat/send`` takes them as
    ``message/send`` does), uploaded once per content with the app's media."""

    kind = "appchat"

    def __init__(
        self,
        client: WeComClient,
        app_name: str,
        app_config: WeComAppConfig,
        chatid: str,
        *,
        images: ImageFetcher | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(client, app_name, app_config, images=images, metrics=metrics)
        # appchat/send has no duplicate check: a part a crash cut off is re-sent marked as a repeat.
        self.duplicate_check = None
        self._chatid = chatid

    def __repr__(self) -> str:
        return f"<AppChatChannel app={self._app_name!r} chatid={self._chatid!r}>"

    async def send(self, message: RenderedMessage, recipients: Recipients) -> Receipt:
        """Raises ``TransientDeliveryError`` or ``PermanentDeliveryError`` (see ``WeComClient``)."""
        if message.msgtype not in APPCHAT_MSGTYPES:
            raise PermanentDeliveryError(
                f"appchat {self._chatid!r}: WeCom cannot post a {message.msgtype} message into a group chat",
                reason="invalid_msgtype",
            )
        body = {"chatid": self._chatid, **message_fields(message)}
        await self._client.send_appchat(self._app_name, self._app, body)
        await self._post_attachments(message, recipients)
        return Receipt()

    async def _post_media(self, kind: MediaKind, media_id: str, recipients: Recipients) -> None:
        body = {"chatid": self._chatid, "msgtype": str(kind), str(kind): {"media_id": media_id}}
        await self._client.send_appchat(self._app_name, self._app, body)


class ChatMembers:
    """The members of the apps' group chats, by (corp id, agent id, chatid), from ``appchat/get``."""

    def __init__(self, client: WeComClient | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._members: dict[tuple[str, int, str], tuple[float, tuple[str, ...]]] = {}
        self._asking: dict[tuple[str, int, str], asyncio.Lock] = {}

    def known(self, app: WeComAppConfig, chatid: str) -> tuple[str, ...]:
        """The members last looked up (lower-cased user ids), () before the first lookup."""
        entry = self._members.get((app.corp_id, app.agent_id, chatid))
        return entry[1] if entry is not None else ()

    async def refresh(self, app_name: str, app: WeComAppConfig, chatid: str) -> None:
        """Ask ``appchat/get`` when the list is older than ``MEMBERS_TTL`` (one
        caller at a time per chat); a failure keeps the old list and is logged."""
        key = (app.corp_id, app.agent_id, chatid)
        async with self._asking.setdefault(key, asyncio.Lock()):
            entry = self._members.get(key)
            if self._client is None or (
                entry is not None and self._clock() - entry[0] < MEMBERS_TTL.total_seconds()
            ):
                return
            try:
                info = await self._client.get_appchat(app_name, app, chatid)
            except DeliveryError as exc:
                # Asked again after MEMBERS_TTL, not after every send.
                self._members[key] = (self._clock(), entry[1] if entry is not None else ())
                log.warning("appchat_members_unknown app=%s chatid=%s error=%s", app_name, chatid, exc)
                return
            users = info.get("userlist")
            members = tuple(sorted({str(u).casefold() for u in users})) if isinstance(users, list) else ()
            self._members[key] = (self._clock(), members)
