"""The WeCom client's app group chat calls (应用群聊, ``appchat/create``,
``appchat/get``, ``appchat/send``, docs §6). A mixin of ``WeComClient``,
which brings the per-app access tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.errors import WeComTransportError
from alertbridge.messengers.wecom.transport import Answer

APPCHAT_CREATE = "/cgi-bin/appchat/create"
APPCHAT_GET = "/cgi-bin/appchat/get"
APPCHAT_SEND = "/cgi-bin/appchat/send"


class WeComChatCalls:
    """Create, read and post into app group chats; ``WeComClient`` provides what is declared here."""

    if TYPE_CHECKING:

        async def _app_get(
            self, app_name: str, app: WeComAppConfig, endpoint: str, params: Mapping[str, str]
        ) -> Answer: ...

        async def _app_call(
            self, app_name: str, app: WeComAppConfig, endpoint: str, payload: Mapping[str, object]
        ) -> Answer: ...

    async def send_appchat(self, app_name: str, app: WeComAppConfig, body: Mapping[str, object]) -> None:
        """Post one message into a group chat the app created (``appchat/send``,
        docs §6; ``body`` has ``chatid``, ``msgtype`` and its section). WeCom
        answers no msgid: such messages cannot be recalled.

        Raises:
            PermanentWeComAPIError: 86001/86003/86008 (chatid), 48002 (the app's
                visibility is not the root department) and every other permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure.
        """
        await self._app_call(app_name, app, APPCHAT_SEND, body)

    async def create_appchat(self, app_name: str, app: WeComAppConfig, body: Mapping[str, object]) -> str:
        """Create a group chat (``appchat/create``: ``name``, ``owner``, ``userlist``,
        optional ``chatid``); returns its chatid.

        Raises:
            PermanentWeComAPIError: 86215 (chatid taken), 86216 (a member is not
                valid), 48002 and every other permanent errcode.
            TransientDeliveryError: a retryable errcode, a transport failure or no chatid.
        """
        answer = await self._app_call(app_name, app, APPCHAT_CREATE, body)
        chatid = answer.data.get("chatid")
        if not isinstance(chatid, str) or not chatid:
            raise WeComTransportError(APPCHAT_CREATE, "answer lacks chatid", reason="bad_response")
        return chatid

    async def get_appchat(self, app_name: str, app: WeComAppConfig, chatid: str) -> Mapping[str, object]:
        """A group chat the app created (``appchat/get``): its ``chat_info``
        (``chatid``, ``name``, ``owner``, ``userlist``).

        Raises:
            PermanentWeComAPIError: 86003 (no such chat), 86008 (another app's), 48002 …
            TransientDeliveryError: a retryable errcode, a transport failure or no chat_info.
        """
        answer = await self._app_get(app_name, app, APPCHAT_GET, {"chatid": chatid})
        info = answer.data.get("chat_info")
        if not isinstance(info, dict) or not isinstance(info.get("userlist"), list):
            raise WeComTransportError(APPCHAT_GET, "answer lacks chat_info", reason="bad_response")
        return info
