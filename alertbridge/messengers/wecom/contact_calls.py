"""The WeCom client's contact reads command authorization needs (``user/get``,
``tag/get``). A mixin of ``WeComClient``, which brings the per-app access tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alertbridge.messengers.wecom.config import WeComAppConfig
from alertbridge.messengers.wecom.errors import WeComTransportError
from alertbridge.messengers.wecom.transport import Answer

USER_GET = "/cgi-bin/user/get"
TAG_GET = "/cgi-bin/tag/get"


@dataclass(frozen=True, slots=True)
class TagMembers:
    """A tag's members as ``tag/get`` lists them: user ids (lower-cased: WeCom
    user ids are case-insensitive) and the departments tagged as a whole."""

    users: frozenset[str]
    parties: frozenset[str]


class WeComContactCalls:
    """A member's departments and a tag's members; ``WeComClient`` provides what is declared here."""

    if TYPE_CHECKING:

        async def _app_get(
            self, app_name: str, app: WeComAppConfig, endpoint: str, params: Mapping[str, str]
        ) -> Answer: ...

    async def user_departments(self, app_name: str, app: WeComAppConfig, userid: str) -> frozenset[str]:
        """The ids of the departments ``userid`` belongs to (``user/get``'s ``department``).

        WeCom answers only for members inside the app's visible range, and only
        to apps with contact read permission (developer.work.weixin.qq.com
        document 90196, 读取成员).

        Raises:
            PermanentWeComAPIError: 60011 (outside the visible range), 48002
                (no contact permission) and every other permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure.
        """
        answer = await self._app_get(app_name, app, USER_GET, {"userid": userid})
        departments = answer.data.get("department")
        if not isinstance(departments, list):
            raise WeComTransportError(USER_GET, "answer lacks the department list", reason="bad_response")
        return frozenset(str(d) for d in departments if isinstance(d, int) and not isinstance(d, bool))

    async def tag_members(self, app_name: str, app: WeComAppConfig, tagid: str) -> TagMembers:
        """The members of tag ``tagid`` (``tag/get``: ``userlist`` and ``partylist``,
        limited to the app's visible range; document 90213, 获取标签成员).

        Raises:
            PermanentWeComAPIError: 60011 / 48002 and every other permanent errcode.
            TransientDeliveryError: a retryable errcode or a transport failure.
        """
        answer = await self._app_get(app_name, app, TAG_GET, {"tagid": tagid})
        users = answer.data.get("userlist", [])
        parties = answer.data.get("partylist", [])
        if not isinstance(users, list) or not isinstance(parties, list):
            raise WeComTransportError(TAG_GET, "answer has malformed member lists", reason="bad_response")
        return TagMembers(
            users=frozenset(
                u["userid"].casefold()
                for u in users
                if isinstance(u, dict) and isinstance(u.get("userid"), str)
            ),
            parties=frozenset(str(p) for p in parties if isinstance(p, int) and not isinstance(p, bool)),
        )
